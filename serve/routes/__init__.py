"""The API's routes, one blueprint per area, documented as they are declared.

`API` collects each route's body and response models when its module is
imported; `serve.app.create_app` registers the blueprints and builds
`/openapi.json` from `API`.
"""

from __future__ import annotations

from serve.openapi import Api

API = Api(
    "vgsales prediction API",
    "1",
    "Global video game sales (millions) from regional sales (`/predict`, the "
    "original design) and before release (`/v1/forecast`). Categories unseen in "
    "training are accepted and listed in `unseen`.",
)
