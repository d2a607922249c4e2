"""A stateful, in-process stand-in for the parts of Azure that CI governance calls.

It plugs in under the real SDKs at the HTTP layer (``responses``), so azure-ai-ml,
azure-core's retry and polling policies and our own code all run unchanged. Used by the
tests, the sandbox demo (``python -m sandbox``) and the benchmarks; never deployed.
"""

from fake_azure.server import FakeArmServer, FakeCredential, FakeRequest, FakeResponse, Fault, arm_error

__all__ = ["Fault", "FakeArmServer", "FakeCredential", "FakeRequest", "FakeResponse", "arm_error"]
