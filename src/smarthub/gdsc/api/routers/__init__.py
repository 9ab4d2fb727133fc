"""One FastAPI router per resource of the data services API."""
