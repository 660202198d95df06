from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConditionResult(_message.Message):
    __slots__ = ("expression", "result")
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    expression: str
    result: bool
    def __init__(self, expression: _Optional[str] = ..., result: _Optional[bool] = ...) -> None: ...

class ConditionDetails(_message.Message):
    __slots__ = ("conditions", "matched_index", "connection_taken")
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_TAKEN_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[ConditionResult]
    matched_index: int
    connection_taken: str
    def __init__(self, conditions: _Optional[_Iterable[_Union[ConditionResult, _Mapping]]] = ..., matched_index: _Optional[int] = ..., connection_taken: _Optional[str] = ...) -> None: ...

class ScriptDetails(_message.Message):
    __slots__ = ("language", "code_preview", "inputs", "outputs", "console_logs", "execution_time_ms")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_LOGS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    language: str
    code_preview: str
    inputs: _struct_pb2.Value
    outputs: _struct_pb2.Value
    console_logs: _containers.RepeatedScalarFieldContainer[str]
    execution_time_ms: float
    def __init__(self, language: _Optional[str] = ..., code_preview: _Optional[str] = ..., inputs: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., outputs: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., console_logs: _Optional[_Iterable[str]] = ..., execution_time_ms: _Optional[float] = ...) -> None: ...

class QuestionDetails(_message.Message):
    __slots__ = ("question_text", "rendered_question", "options", "user_response", "response_time_ms")
    QUESTION_TEXT_FIELD_NUMBER: _ClassVar[int]
    RENDERED_QUESTION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    USER_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    question_text: str
    rendered_question: str
    options: _containers.RepeatedScalarFieldContainer[str]
    user_response: str
    response_time_ms: float
    def __init__(self, question_text: _Optional[str] = ..., rendered_question: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., user_response: _Optional[str] = ..., response_time_ms: _Optional[float] = ...) -> None: ...

class MessageDetails(_message.Message):
    __slots__ = ("template", "rendered_message", "media_urls")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    RENDERED_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_URLS_FIELD_NUMBER: _ClassVar[int]
    template: str
    rendered_message: str
    media_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, template: _Optional[str] = ..., rendered_message: _Optional[str] = ..., media_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class VariableChange(_message.Message):
    __slots__ = ("name", "old_value", "new_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    old_value: _struct_pb2.Value
    new_value: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., old_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., new_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ActionDetails(_message.Message):
    __slots__ = ("action_type", "actions_executed", "variables_changed")
    ACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_EXECUTED_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_CHANGED_FIELD_NUMBER: _ClassVar[int]
    action_type: str
    actions_executed: _containers.RepeatedScalarFieldContainer[str]
    variables_changed: _containers.RepeatedCompositeFieldContainer[VariableChange]
    def __init__(self, action_type: _Optional[str] = ..., actions_executed: _Optional[_Iterable[str]] = ..., variables_changed: _Optional[_Iterable[_Union[VariableChange, _Mapping]]] = ...) -> None: ...

class WebhookDetails(_message.Message):
    __slots__ = ("url", "method", "request_headers", "response_status", "response_body")
    class RequestHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    url: str
    method: str
    request_headers: _containers.ScalarMap[str, str]
    response_status: int
    response_body: _struct_pb2.Value
    def __init__(self, url: _Optional[str] = ..., method: _Optional[str] = ..., request_headers: _Optional[_Mapping[str, str]] = ..., response_status: _Optional[int] = ..., response_body: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
