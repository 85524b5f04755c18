"""helpers/quiet.py: what it hides (TensorFlow's log noise, one protobuf notice) and what still reaches the user."""

import logging
import os

from absl import logging as absl_logging

import helpers  # noqa: F401  (importing helpers runs quiet_library_logs)
from helpers import quiet

NOTICE = (quiet.PROTOBUF_VERSION_NOTICE + "proto/v0/anomalies.proto: gencode 6.31.1 runtime 5.29.6. Runtime "
          "version cannot be older than the linked gencode version.")


def test_the_tensorflow_cpp_log_level_is_set_unless_the_user_chose_one(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet.quiet_library_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == quiet.TENSORFLOW_CPP_LOG_LEVEL == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # a developer who wants every line keeps them
    quiet.quiet_library_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_the_protobuf_notice_is_dropped_and_other_absl_errors_pass(caplog):
    quiet.quiet_library_logs()  # twice must not add a second filter
    absl_logger = absl_logging.get_absl_logger()
    assert sum(isinstance(item, quiet.ProtobufVersionNoticeFilter) for item in absl_logger.filters) == 1
    with caplog.at_level(logging.INFO):
        try:
            raise RuntimeError(NOTICE)  # tensorflow_datasets logs the exception object, with its traceback
        except RuntimeError as error:
            absl_logging.exception(error)
        absl_logging.error("Detected incompatible Protobuf Gencode/Runtime versions when loading my_project/x.proto")
    assert [record.getMessage() for record in caplog.records] == [
        "Detected incompatible Protobuf Gencode/Runtime versions when loading my_project/x.proto"]


def test_tensorflow_info_lines_are_dropped_and_its_warnings_pass(caplog):
    tensorflow_logger = logging.getLogger("tensorflow")
    with caplog.at_level(logging.INFO, logger="tensorflow"):
        tensorflow_logger.info("Assets written to: /models/run/exported_model.partial/assets")
        tensorflow_logger.warning("Your input ran out of data")
    assert [record.getMessage() for record in caplog.records] == ["Your input ran out of data"]
