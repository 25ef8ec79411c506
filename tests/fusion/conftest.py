import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The fusion tests run many small models: one thread each is fastest on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
