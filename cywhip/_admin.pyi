from typing import NamedTuple, Optional, Sequence, Union

class PlaceInfo(NamedTuple):
    pid: int
    alive: bool
    claiming: Optional[int]

class GroupInfo(NamedTuple):
    name: str
    position: int
    depth: int
    durable: bool
    members: tuple[int, ...]
    holding_back: bool

class ChannelInfo(NamedTuple):
    name: str
    path: str
    message_length: Optional[int]
    max_queued_messages: Optional[int]
    depth: Optional[int]
    sender_alive: bool
    receiver_alive: bool
    sender_pid: int
    receiver_pid: int
    file_size: Optional[int]
    problem: Optional[str]
    senders: tuple[PlaceInfo, ...]
    receivers: tuple[PlaceInfo, ...]
    groups: tuple[GroupInfo, ...]
    max_queued_bytes: Optional[int]

def channels() -> list[ChannelInfo]: ...
def remove_group(name: str, group: str) -> None: ...
def remove_stale(names: Union[str, Sequence[str], None] = ...) -> list[str]: ...
