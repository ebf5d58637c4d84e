"""LSP errors the server answers with, besides pygls's own."""

from pygls.exceptions import JsonRpcException


class RequestFailed(JsonRpcException):
    CODE = -32803  # LSP RequestFailed: the request was valid but could not be served
    MESSAGE = "Request failed"
