import os

# Every pass verifies the graph it produces while the suite runs.
os.environ["CHAINRULE_VERIFY"] = "1"

import pytest


@pytest.fixture(scope="session", autouse=True)
def llvm_cache_directory(tmp_path_factory):
    """Compiled LLVM kernels go to a folder of the test session, not the user's cache."""
    saved = os.environ.get("CHAINRULE_CACHE_DIR")
    os.environ["CHAINRULE_CACHE_DIR"] = str(tmp_path_factory.mktemp("llvm-cache"))
    yield
    if saved is None:
        del os.environ["CHAINRULE_CACHE_DIR"]
    else:
        os.environ["CHAINRULE_CACHE_DIR"] = saved


@pytest.fixture(autouse=True)
def functions_made_again_compile_afresh():
    """Each test starts as a new process would: a function it makes again (a nested ``def`` of the
    same code as an earlier test's, which is gone) finds none of that test's kernels in memory."""
    from chainrule.transforms.reuse import forget_functions

    forget_functions()


@pytest.fixture(params=["numpy", "llvm"])
def backend(request):
    """Each backend in turn: a test taking ``backend`` runs once per backend."""
    return request.param
