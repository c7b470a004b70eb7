"""MariaDB: the engine factory, dbt runs, landing tables, the mart read, snapshots."""
