"""The data services API (FastAPI): one router per resource, schemas, mappers, authentication."""
