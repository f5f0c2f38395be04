"""Teaching labs: `pktlab lab list | show N | start N | check N | answer N KEY=VALUE ... | stop`.

A lab is a directory of this package, `NN-slug/` (package data, so an installed pktlab has them too):

    lab.yaml       title, topics, the topology file, the answers the checker reads (name: what to give), and
                   `needs:` the node roles it cannot do without (a role counts as implemented when the agent of
                   a node with it reports a status key of the role's name: see catalog.missing_roles)
    README.md      the instructions a student follows (printed by `start` and `show`)
    topology.yaml  the mesh `start` builds (small: a lab is one mesh at a time, run name "lab")
    check.py       setup(lab) (optional: facts to show, baselines, hidden faults) and check(lab) -> [Check]

Modules: catalog (finding and loading labs), session (the running lab: start, answers, check, stop, and what a
checker gets to work with), checking (Check results and measurements several checkers share).
"""
