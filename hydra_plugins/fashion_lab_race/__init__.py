"""fashion-lab's race sweeper: a grid that trains its arms in rungs and stops the ones clearly worse."""
