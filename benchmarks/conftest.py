"""Options of the latency suites: which models, thread counts and backends to parametrize over."""

DEFAULT_BACKENDS = "native,torch,onnxruntime"


def pytest_addoption(parser):
    parser.addoption("--models", default="ghostnet_100,mobilenet_v3_large",
                     help="comma-separated zoo models to benchmark, or 'all'")
    parser.addoption("--threads", default="1,2", help="comma-separated thread counts")
    parser.addoption("--backends", default=DEFAULT_BACKENDS,
                     help="comma-separated backends (default: %(default)s), or 'all' for every registered one")


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def pytest_generate_tests(metafunc):
    from ghostfast import models

    if "model_name" in metafunc.fixturenames:
        opt = metafunc.config.getoption("--models")
        names = models.names() if opt == "all" else [models.resolve(n) for n in _csv(opt)]
        metafunc.parametrize("model_name", names)
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", [int(t) for t in _csv(metafunc.config.getoption("--threads"))])
    if "backend" in metafunc.fixturenames:
        from ghostfast.backends import backend_names, get_backend

        opt = metafunc.config.getoption("--backends")
        names = backend_names() if opt == "all" else [get_backend(b).name for b in _csv(opt)]
        metafunc.parametrize("backend", names)
