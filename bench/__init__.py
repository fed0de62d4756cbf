"""The benchmark: every figure of DESIGN.md's Targets table beside a limit measured in the same run.

    python -m bench [--quick] [--only NAME] [--profile]

Starts embedded Postgres and Valkey in a temp dir (unless DATABASE_URL / REDIS_URL are set),
gives each measurement a freshly created and migrated database, prints a table and writes it as
JSON to bench/results/.
"""
