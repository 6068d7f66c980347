"""dynoserver: the Dyno project-management API server that dynoctl manages.

Run it with ``uvicorn dynoserver.app:create_app --factory``; everything is
configured from the environment (see ``dynoserver.settings``).
"""
