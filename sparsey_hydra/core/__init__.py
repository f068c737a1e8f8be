"""The Sparsey core: pure torch, vectorised over all MACs of a layer."""
