"""fashion-lab's until-sure sweeper: a grid that adds seeds only where a comparison is still undecided."""
