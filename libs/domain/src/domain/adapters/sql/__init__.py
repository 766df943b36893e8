"""SQLModel persistence: PostgreSQL (psycopg 3) in production, SQLite as the embedded default."""
