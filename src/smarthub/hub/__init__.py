"""The Smart Hub: data mirror, history store, interval building; knows nothing of GDSC internals."""
