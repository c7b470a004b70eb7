"""The network edge: nginx in front of several gunicorn instances of the API.

- `limits`: every timeout, size and connection cap of the edge, and how the
  instances are sized; nginx's configuration and gunicorn's settings both
  come from it.
- `nginx`: the configuration rendered from `nginx.conf.j2`, and how nginx runs.
- `launcher`: `python -m serve` — starts the instances and nginx, restarts
  an instance that dies, stops them all on exit.
"""
