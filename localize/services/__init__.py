"""Service functions: the one place where the API and the CLI meet the database, the store and the engine.

Every function is keyword-only and takes what it touches (a session, a runtime) explicitly.
"""
