"""`synchub demo`: the hub with vendor sandboxes and a realistic day of traffic."""
