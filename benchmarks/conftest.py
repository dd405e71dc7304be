import pytest


def pytest_addoption(parser):
    parser.addoption("--models", default="ghostnet_100,mobilenet_v3_large",
                     help="comma-separated zoo models to benchmark, or 'all'")
    parser.addoption("--threads", default="1,2", help="comma-separated thread counts")


def pytest_generate_tests(metafunc):
    from ghostfast import models

    if "model_name" in metafunc.fixturenames:
        opt = metafunc.config.getoption("--models")
        names = models.names() if opt == "all" else [models.resolve(n) for n in opt.split(",")]
        metafunc.parametrize("model_name", names)
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", [int(t) for t in metafunc.config.getoption("--threads").split(",")])
