"""The in-home display served by the hub on the home network (see `smarthub.hub.ihd.app`)."""
