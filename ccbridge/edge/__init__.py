"""Kamailio as the SIP edge: its view of the deployment, its JSON-RPC, the bridge's driver."""
