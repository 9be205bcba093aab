"""Field mappings and filters as configuration (`[pairs.NAME.mappings.FLOW]`): ``rules`` reads and checks them
(config.py, when the file loads), ``overlay`` lays them over a pair's flows and shows the effective table."""
