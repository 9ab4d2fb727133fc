"""Who is calling the API: OAuth2 clients and tokens, bearer tokens, party certificates, limits."""
