"""`netsetup diagnose`: what is wrong with an assistant's connection, how to fix it, who must act.

The parts: `clientconfig` (the config file and the metadata provision writes into it), `context`
(what every check gets), `engine` (checks run concurrently under one deadline), `checks/` (one
module per family), `platform` (the one place for OS specifics), `report/` (renderers over the
result model in `result`).
"""
