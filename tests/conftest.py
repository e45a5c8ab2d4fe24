"""Fixtures shared by the test folders."""
import pytest


@pytest.fixture(scope="session")
def sgd_steps():
    """A plain SGD loop for tiny models built inside fixtures: fit(model, X, Y, steps) -> model in eval mode."""

    def fit(model, X, Y, steps, lr=0.1, batch_size=32):
        import torch  # here, not at the top: the service's tests need no torch

        torch.set_num_threads(1)  # a tiny model: more threads only contend on busy shared cores
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            ix = torch.randint(0, len(X), (batch_size,))
            _, loss = model(X[ix], Y[ix])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()

    return fit
