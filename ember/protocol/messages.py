"""Every message that crosses a socket in ember: the one schema.

Tags are stable numbers; never reuse one.  1..126 are taken by the first wave; new
messages take tags from 128 up, in the block of their capability:
130-149 cluster discovery and sessions, 150-169 wire hardening, 170-189 object store,
190-209 failure handling, 210-259 scheduling and placement groups, 260-279 utilities,
280-309 jobs and runtime environments, 310-339 observability, 340-369 head storage and
leadership, 370-399 generators and concurrency groups, 400+ unassigned.  Fields hold only msgpack types (bytes, str,
int, float, bool, list, dict, None) or other messages.  Addresses are "host:port"
strings; ids are bytes.
"""
from __future__ import annotations

from typing import Optional

from ember.protocol.codec import message


# --- connection set-up (1-9) ----------------------------------------------------------
@message(1)
class Challenge:
    nonce: bytes


@message(2)
class AuthResponse:
    proof: bytes
    nonce: bytes
    peer_kind: str          # "driver", "worker", "node", "cli"


@message(3)
class AuthOk:
    proof: bytes


@message(4)
class Ok:
    pass


@message(5)
class ErrorReply:
    kind: str               # "ValueError", "ObjectStoreFullError", ...
    message: str
    data: Optional[bytes]   # a pickled exception where one helps the caller


# --- control store (10-39) ------------------------------------------------------------
@message(10)
class NodeInfo:
    node_id: bytes
    address: str            # the node daemon's rpc address
    resources_total: dict
    resources_available: dict
    is_alive: bool
    is_head: bool
    store_dir: str
    labels: dict
    pending_demands: list   # [[resource dict, count], ...]
    object_store_used_bytes: int
    object_store_capacity_bytes: int
    load: Optional[list] = None  # [queued lease requests, mean task s] from the last heartbeat


@message(11)
class RegisterNode:
    info: NodeInfo


@message(12)
class Heartbeat:
    node_id: bytes
    resources_available: dict
    pending_demands: list
    object_store_used_bytes: int
    view_version: int       # the newest cluster view this node has
    load: Optional[list] = None  # [queued lease requests, mean task s] (placement's load view)


@message(13)
class ClusterView:
    version: int
    nodes: list             # [NodeInfo]; empty when the node is up to date


@message(14)
class GetNodes:
    pass


@message(15)
class NodeList:
    nodes: list


@message(16)
class RegisterJob:
    driver_address: str
    driver_pid: int
    namespace: str
    node_id: bytes
    entrypoint: str


@message(17)
class JobRegistered:
    job_id: bytes
    namespace: str


@message(18)
class JobFinished:
    job_id: bytes


@message(19)
class KvPut:
    namespace: str
    key: bytes
    value: bytes
    overwrite: bool


@message(20)
class KvGet:
    namespace: str
    key: bytes


@message(21)
class KvValue:
    value: Optional[bytes]


@message(22)
class KvDel:
    namespace: str
    key: bytes


@message(23)
class KvKeys:
    namespace: str
    prefix: bytes


@message(24)
class KvKeyList:
    keys: list


@message(25)
class Subscribe:
    channel: str            # "nodes", "logs:<job hex>", "actors"
    key: bytes


@message(26)
class Published:
    channel: str
    key: bytes
    data: object


@message(27)
class LogLines:
    job_id: bytes
    pid: int
    node_id: bytes
    is_err: bool
    lines: list


@message(28)
class DrainNode:
    node_id: bytes


@message(29)
class GetJobs:
    pass


@message(30)
class JobList:
    jobs: list              # [[job_id, namespace, driver_pid, is_alive]]


# --- node daemon (40-69) ----------------------------------------------------------------
@message(40)
class RegisterWorker:
    worker_id: bytes
    pid: int
    address: str            # the worker's own rpc server
    job_id: bytes
    is_driver: bool
    prestart_workers: bool = True  # drivers: have the node daemon start workers for the job ahead


@message(41)
class WorkerRegistered:
    node_id: bytes
    store_dir: str
    gcs_address: str
    session_dir: str
    node_resources: dict


@message(42)
class RequestLease:
    job_id: bytes
    resources: dict
    strategy: list          # ["DEFAULT"] | ["SPREAD"] | ["NODE_AFFINITY", node_id, soft]
    #                         | ["NODE_LABEL", hard {label: [op, values]}, soft {...}]
    is_spillback: bool      # granted here or queued here; never spilled again
    for_actor: bool
    description: str        # function or class name, for warnings and status
    placement_resources: Optional[dict] = None  # actors: the shape that must fit to grant (None: resources)
    runtime_env: Optional[dict] = None  # checked, packages uploaded; workers are pooled per distinct env
    arg_bytes: Optional[dict] = None  # node daemon address -> bytes of the next task's arguments stored there
    task_s: float = 0.0     # the owner's moving average of the key's task time (0: unknown)
    spill_hops: int = 0     # spillbacks this request followed (task owners count them; 0: not counted)


@message(43)
class LeaseGranted:
    lease_id: bytes
    worker_id: bytes
    worker_address: str
    node_id: bytes
    gpu_ids: list
    resources: dict


@message(44)
class LeaseSpillback:
    node_id: bytes
    address: str


@message(45)
class LeaseInfeasible:
    message: str


@message(46)
class ReturnLease:
    lease_id: bytes
    is_worker_dead: bool


@message(47)
class WorkerBlocked:
    worker_id: bytes


@message(48)
class WorkerUnblocked:
    worker_id: bytes


@message(49)
class CreateObject:
    object_id: bytes
    size_bytes: int
    owner_address: str


@message(50)
class ObjectSealed:
    object_id: bytes
    size_bytes: int
    owner_address: str


@message(51)
class PullObject:
    object_id: bytes
    from_address: str       # node daemon address holding a copy
    size_bytes: int


@message(52)
class FreeObjects:
    object_ids: list


@message(53)
class ReadChunk:
    object_id: bytes
    offset: int
    length: int


@message(54)
class Chunk:
    data: bytes
    total_bytes: int


@message(55)
class NodeStats:
    pass


@message(56)
class NodeStatsReply:
    node_id: bytes
    num_workers: int
    pending_leases: int
    store_used_bytes: int
    store_objects: int      # objects in the store's table: in shm or spilled
    store_capacity_bytes: int
    store_spilled_bytes: int  # bytes with a spill file
    store_spilled_objects: int  # objects on disk only


@message(57)
class KillWorkerProcess:
    worker_id: bytes
    force: bool


@message(58)
class EnsureLocal:
    object_id: bytes        # restore from spill if needed; Ok when the file is in shm


@message(59)
class CreateObjectGranted:
    """Reply to CreateObject: write the object.  ``recycled_name``, when not empty, is a
    file in the store directory that already holds memory: write into it (resize it to
    the object's size) instead of creating a new file."""
    recycled_name: str


@message(68)
class GetMemoryInfo:
    """``ember memory`` -> node daemon: the store's figures and, with ``include_objects``,
    its table and the objects of its drivers and workers (asked with ListProcessObjects)."""
    include_objects: bool
    process_timeout_s: float  # a driver/worker that has not answered by then is listed as such
    objects_max: int        # rows per process at most


@message(69)
class NodeMemoryInfo:
    node_id: bytes
    address: str
    store_used_bytes: int
    store_capacity_bytes: int
    store_objects: int
    store_spilled_bytes: int
    store_spilled_objects: int
    store_entries: list     # [[object_id, state, size_bytes, is_primary]]; state: ObjectState name
    processes: list         # [ProcessObjects]
    unanswered: list        # [[pid, address, kind, reason]]: processes that did not answer


# --- core worker (70-99) -----------------------------------------------------------------
@message(70)
class TaskSpec:
    task_id: bytes
    job_id: bytes
    function_id: bytes
    function_blob: Optional[bytes]   # sent with the first task of a function to a worker
    name: str
    args: list              # [[0, inline bytes] | [1, object_id, owner_address]]
    kwarg_names: list       # the last len(kwarg_names) args are keyword arguments
    num_returns: int
    owner_address: str
    max_retries: int
    retry_exceptions: object  # bool or list of pickled exception classes (bytes)
    attempt: int
    resources: dict
    gpu_ids: list
    actor_id: Optional[bytes]
    sequence_no: int
    runtime_env: Optional[dict]
    capture_child_tasks: bool = False  # placement groups: tasks it submits go into its group


@message(71)
class PushTask:
    spec: TaskSpec


@message(72)
class ReturnObject:
    object_id: bytes
    data: Optional[bytes]   # inline value (the serialization layout)
    node_id: Optional[bytes]  # when stored in a node's store
    node_address: str
    size_bytes: int
    contained_refs: Optional[list] = None  # [[object_id, owner_address]] of refs inside the value


@message(73)
class TaskDone:
    returns: list           # [ReturnObject]
    error: Optional[bytes]  # a serialized RayTaskError for application errors
    is_retryable_error: bool


@message(74)
class GetObjectStatus:
    object_id: bytes


@message(75)
class ObjectStatus:
    status: str             # "ready", "failed"
    data: Optional[bytes]
    node_id: Optional[bytes]
    node_address: str
    size_bytes: int


@message(76)
class CancelTask:
    task_id: bytes
    force: bool


@message(77)
class Exit:
    reason: str


@message(78)
class AddBorrower:
    object_id: bytes
    borrower_address: str


@message(79)
class RemoveBorrower:
    object_id: bytes
    borrower_address: str


@message(80)
class ReturnRefsStored:
    """Caller -> executor: the refs inside this task's returns are registered with their
    owners; the executor may drop the holds it kept on them since its reply."""
    task_id: bytes


@message(98)
class ListProcessObjects:
    """Node daemon -> its drivers and workers, for ``ember memory``."""
    objects_max: int


@message(99)
class ProcessObjects:
    pid: int
    address: str            # the process's own rpc address (owners are named by it)
    kind: str               # "driver" or "worker"
    num_objects: int        # rows before the objects_max cut
    objects: list           # [[object_id, owner_address, size_bytes, status, is_inline,
                            #   node_address, reference_type, call_site]]


# --- actors (100-127) ----------------------------------------------------------------------
@message(100)
class ActorCreationSpec:
    """What the actor's worker needs to build it; opaque bytes to the actor table."""
    actor_id: bytes
    job_id: bytes
    job_namespace: str      # the creating job's namespace (the actor's runtime context)
    class_name: str
    class_blob: bytes
    args: list              # as TaskSpec.args
    kwarg_names: list
    owner_address: str
    owner_node_address: str  # the node daemon asked first for the actor's lease
    running_resources: dict  # held while the actor lives
    max_concurrency: int
    handle_meta: dict       # {"class_name", "methods": {name: [num_returns, max_task_retries]},
                            #  "is_async", "max_task_retries", "max_pending_calls"}
    name: str
    namespace: str
    capture_child_tasks: bool = False  # placement groups: tasks it submits go into its group


@message(101)
class RegisterActor:
    actor_id: bytes
    job_id: bytes
    owner_address: str
    owner_worker_id: bytes
    class_name: str
    creation_spec: bytes    # an encoded ActorCreationSpec
    name: str
    namespace: str
    is_detached: bool
    resources: dict         # running shape
    placement_resources: dict
    strategy: list
    max_restarts: int
    get_if_exists: bool


@message(102)
class ActorRegistration:
    actor_id: bytes         # another actor's id when get_if_exists found it
    is_existing: bool
    handle_meta: dict


@message(103)
class ActorInfo:
    actor_id: bytes
    version: int            # per actor, grows with every publication
    state: str              # ActorState name
    address: str            # the worker's address while ALIVE, else ""
    incarnation: int
    death_kind: str         # DeathKind name when DEAD, else ""
    message: str            # why it is DEAD, or why its last incarnation ended
    error: Optional[bytes]  # a serialized exception (``__init__`` raised)


@message(104)
class GetActorInfo:
    actor_id: bytes
    subscribe: bool         # also subscribe this connection to the actor's publications


@message(105)
class GetNamedActor:
    name: str
    namespace: str


@message(106)
class NamedActor:
    actor_id: bytes
    handle_meta: dict


@message(107)
class ListNamedActors:
    namespace: str
    all_namespaces: bool


@message(108)
class NamedActorList:
    actors: list            # [[namespace, name]]


@message(109)
class KillActor:
    actor_id: bytes
    no_restart: bool


@message(110)
class ActorHandlesReleased:
    actor_id: bytes         # the owner dropped its last handle and none was ever shared


@message(111)
class ActorExitReport:
    actor_id: bytes
    worker_id: bytes        # exit_actor() was called on this worker


@message(112)
class WorkerExited:
    worker_id: bytes
    node_id: bytes
    exit_detail: str        # "exit code 1", "killed by signal 9 (SIGKILL)"


@message(113)
class CreateActor:
    actor_id: bytes
    incarnation: int
    creation_spec: bytes
    gpu_ids: list


@message(114)
class ActorCreationReply:
    error: Optional[bytes]  # a serialized RayTaskError when ``__init__`` raised
    message: str


@message(115)
class PushActorTask:
    spec: TaskSpec          # actor_id and sequence_no set; owner_address is the caller
    min_sequence_no: int    # every call of this caller below it is finished or abandoned
    concurrency_group: str = ""  # the group the call runs in ("" = the method's own, else the default)


# --- streaming generators and concurrency groups (370-399) ----------------------------------
@message(370)
class GeneratorItem:
    task_id: bytes
    attempt: int
    index: int              # 1, 2, ...: the order the generator yielded it
    item: ReturnObject      # object_id is the task id + the item's return index
    worker_address: str     # the executor, for refs contained in the value


# --- observability: task events and the state API (310-339) -----------------------------------
@message(310)
class TaskEventBatch:
    job_id: bytes
    events: bytes           # msgpack of [2, {key: fields}, [[task_id, attempt, state, time_s, key]]]
                            # (logic/control/task_events.FLAT_BATCH), or the older
                            # [[task_id, attempt, {state: time_s}, {field: value} | None]]
    count: int              # task ids in ``events`` (the control store's window counts tasks)
    dropped: int            # task attempts the sender could not buffer since its last batch


@message(311)
class ListTasks:
    filters: list           # [[key, "=" | "!=", value]]
    limit: int              # 0: no limit


@message(312)
class TaskList:
    tasks: list             # [dict] with Ray's TaskState field names
    total: int              # how many matched before the limit
    dropped: int            # task events the control store or the workers had to drop


@message(313)
class ListActors:
    filters: list
    limit: int


@message(314)
class ActorList:
    actors: list            # [dict] with Ray's ActorState field names
    total: int


@message(315)
class SummarizeTasks:
    pass


@message(316)
class TaskSummary:
    summary: dict           # func_or_class_name -> {"type", "state_counts"}
    dropped: int


# --- failure handling: a driver back on a control store that came back (190-209) ----------
@message(190)
class RejoinJob:
    """A driver reconnected to a control store (same address) re-attaches its job to the new
    connection: the job's record is created if the store lost it, and the job ends when this
    connection closes, as after RegisterJob."""
    job_id: bytes
    driver_address: str
    driver_pid: int
    namespace: str
    node_id: bytes
    entrypoint: str


# --- object store: given back (170-189) -----------------------------------------------
@message(170)
class AbortObject:
    """A writer granted ``CreateObject`` will not seal the object (its write failed):
    the node daemon drops the reservation and any partial file.  ``is_out_of_space``:
    the store's tmpfs ran out of room (ENOSPC) before the capacity was reached, so the
    daemon lowers the capacity to what it holds (later creates spill instead).  Reply Ok."""
    object_id: bytes
    is_out_of_space: bool


@message(171)
class EnsureReadable:
    """A local reader whose ``open`` failed: like ``EnsureLocal``, but an object that is
    on disk only is not copied back into shared memory; the reply names its spill file,
    which the reader maps read-only (its pages live in the page cache, not in the store)."""
    object_id: bytes


@message(172)
class ReadableAt:
    """Reply to ``EnsureReadable``: ``spill_path`` to map, or "" when the object's file is
    in the store (open it there)."""
    spill_path: str


# --- placement groups (235-259) ----------------------------------------------------------------
@message(235)
class PrepareBundles:
    """Control store -> node daemon: reserve these bundles, all or none (phase 1)."""
    pg_id: bytes
    attempt: int
    bundles: list           # [[index, resources dict]]
    commit: bool            # the group's only node: prepare and commit at once


@message(236)
class BundlesPrepared:
    is_ok: bool
    message: str            # why not, when not ok


@message(237)
class CommitBundles:
    """Control store -> node daemon: the reserved bundles become the group's resources (phase 2)."""
    pg_id: bytes
    attempt: int
    indices: list


@message(238)
class CancelBundles:
    """Control store -> node daemon: release these bundles (kills what runs in them)."""
    pg_id: bytes
    indices: list
    is_removed: bool        # the group is gone: refuse its leases from now on


@message(239)
class CreatePlacementGroup:
    pg_id: bytes
    bundles: list           # [resources dict]
    strategy: str
    name: str
    namespace: str
    is_detached: bool
    job_id: bytes


@message(240)
class WaitPlacementGroup:
    pg_id: bytes
    timeout_s: Optional[float]  # None: until it is created or removed


@message(241)
class RemovePlacementGroup:
    pg_id: bytes


@message(242)
class GetPlacementGroup:
    pg_id: Optional[bytes]  # by id, or by name in namespace
    name: str
    namespace: str


@message(243)
class PlacementGroupInfo:
    pg_id: bytes
    name: str
    namespace: str
    bundles: list           # [resources dict]
    strategy: str
    state: str              # PgState name
    is_detached: bool
    job_id: bytes
    bundle_nodes: list      # per bundle: node id or None
    bundle_addresses: list  # per bundle: node daemon address or ""


@message(244)
class ListPlacementGroups:
    pass


@message(245)
class PlacementGroupList:
    groups: list            # [PlacementGroupInfo]


@message(246)
class PlacementGroupRemoved:
    """Published to node daemons (channel "placement_groups"): refuse the group's leases."""
    pg_id: bytes


# --- dashboard: what a node's machine and processes use (580-599; docs/dashboard.md) ------------
@message(580)
class GetHostStats:
    """-> node daemon: the machine's CPU and memory use and its workers' (the dashboard's nodes page)."""
    include_workers: bool   # False: the machine and the daemon only (the charts' sampler)


@message(581)
class HostStats:
    node_id: bytes
    cpu_percent: float      # the machine's, since the previous GetHostStats (0.0 on the first)
    cpu_count: int
    mem_total_bytes: int
    mem_used_bytes: int     # total - available
    load_avg: list          # [1 min, 5 min, 15 min]
    workers: list           # [[worker_id, pid, job_id, cpu_percent, rss_bytes]]
    daemon: list            # [pid, cpu_percent, rss_bytes] of the node daemon itself


# --- lineage reconstruction (docs/fault_tolerance.md, "Objects lost with their node") ---
@message(430)
class ReportObjectLost:
    """A borrower could not read an object at ``node_address`` (the owner's last answer):
    the owner checks that every copy is gone, rebuilds the object from its lineage or
    fails it, and answers with the object's new ``ObjectStatus``."""
    object_id: bytes
    node_address: str
    detail: str


# --- recursive cancellation (ember.cancel(recursive=True)) ---
@message(431)
class CancelChildren:
    """Owner -> the worker running ``task_id``: cancel the tasks that task submitted (and theirs)."""
    task_id: bytes
    force: bool


# --- remote client: ember:// (500-549) --------------------------------------------------
# A client (``ember.init("ember://HOST:10001")``) keeps one authenticated connection to the
# head's client server and runs its core worker's connections through it as channels; the
# sequenced messages (ChannelOpen/ChannelData/ChannelClose) are delivered exactly once across
# reconnections (docs/client.md).
@message(500)
class ClientHello:
    """Client -> client server, the first request on a tunnel: start or resume a session."""
    session_id: bytes       # b"" for a new session
    received_upto: int      # last sequence number the client has applied
    version: str            # ember's version on the client
    python: str             # "3.12" (major.minor): pickles must be read by the same Python
    namespace: str


@message(501)
class ClientWelcome:
    session_id: bytes
    received_upto: int      # last sequence number the server has applied
    address: str            # where the cluster reaches the client's core worker (a listener on the head)
    gcs_address: str
    node_address: str       # the head's node daemon: the client's "local" node
    grace_s: float          # how long the server keeps the session of a silent client
    ping_interval_s: float


@message(502)
class ChannelOpen:
    """Open a relayed connection: client -> server dials ``address``; server -> client
    announces an inbound connection from ``address`` to the client's listener."""
    seq: int
    channel_id: int
    address: str


@message(503)
class ChannelData:
    seq: int
    channel_id: int
    data: bytes


@message(504)
class ChannelClose:
    seq: int
    channel_id: int
    reason: str


@message(505)
class TunnelPing:
    """Both ways, every ping interval: liveness, and the sender's ack of what it applied."""
    received_upto: int


@message(506)
class WriteObjectChunk:
    """A writer that cannot map the node's shared memory (a remote client) sends the bytes of
    an object it created with ``CreateObject``; ``ObjectSealed`` ends it."""
    object_id: bytes
    offset: int
    total_bytes: int
    recycled_name: str      # from CreateObjectGranted
    data: bytes


@message(507)
class ClientGoodbye:
    """Client -> client server at ``ember.shutdown()``: end the session now (no grace period)."""
    pass


# --- object transfer at wire speed (issue 12; tags 470-499) -----------------------------------
@message(470)
class LocateObject:
    """Puller -> the node daemon of the object's primary copy: where to read it from."""
    object_id: bytes
    requester: str          # the puller's transfer endpoint "host:port"


@message(471)
class ObjectSources:
    total_bytes: int
    sources: list           # transfer endpoints "host:port", least loaded first
    primary: str            # the answering node's own transfer endpoint


@message(472)
class TransferDone:
    """One-way, puller -> primary's node daemon: the transfer ended; a complete copy
    (``is_copy_added``) makes the puller a source for later pulls."""
    object_id: bytes
    requester: str
    sources: list
    failed: list
    is_copy_added: bool
    requester_address: str  # the puller's node daemon: told to free its copy with the primary


@message(473)
class PrefetchObjects:
    """Worker -> its node daemon: pull these remote objects (``entries``: [object id,
    primary's node daemon address, size]) and answer Ok when every one ended (an object
    that failed is reported by the ``PullObject`` the reader sends next)."""
    entries: list
    priority: int           # PullPriority: 0 task arguments, 1 get


# --- standby heads: who leads (issue #11, section 3; tags 600-629) -----------------------------------------
@message(600)
class WhoLeads:
    """Asked of a control store before using it: is it the leader, and if not, who is."""
    pass


@message(601)
class HeadRole:
    is_leader: bool
    epoch: int              # the epoch this head leads under; else the leader's as last read (0: unknown)
    leader_address: str     # "" when unknown
    head_address: str       # the head that answered
    role: str               # leading / watching (standby) / deposed / ...
    standbys: list          # [[address, seconds since it was last seen]]
    led_s: float = 0.0      # seconds since this head began leading (0: it does not lead); a node bounds
                            # the restored-node grace by it (logic/node/head_watch.py, Rule 5)


@message(602)
class NodeWorkers:
    """A node daemon, after (re-)registering: the worker processes alive on it, so that a head
    restored from storage learns which actors' workers died while no head listened."""
    node_id: bytes
    worker_ids: list


# --- metrics, workers and logs of a node (550-579; docs/observability.md) ----------------
@message(550)
class MetricsReport:
    """Driver/worker -> its node daemon (one-way), about once a second: user metrics
    (``ember.util.metrics``) changed since the last report.  Each entry is
    [name, kind ("counter"/"gauge"/"histogram"), description, tag_keys, boundaries,
    [[tag values, value], ...]]: counters carry increments, gauges the last value,
    histograms [bucket increments..., sum increment]."""
    metrics: list


@message(551)
class ListNodeWorkers:
    """-> node daemon: its drivers and workers, live and recently dead (``list_workers``)."""
    pass


@message(552)
class NodeWorkerList:
    node_id: bytes
    address: str
    workers: list           # [dict with Ray's WorkerState fields]


@message(553)
class ListLogFiles:
    """-> node daemon: the files of its session's logs/ directory whose names match ``glob``."""
    glob: str


@message(554)
class LogFileList:
    node_id: bytes
    files: list             # [[name, size_bytes]]


@message(555)
class ReadLogFile:
    """-> node daemon: part of one file of logs/.  ``offset`` < 0 means "the last ``tail_lines``
    lines" (all of them when ``tail_lines`` < 0); else read from ``offset``."""
    filename: str
    offset: int
    max_bytes: int
    tail_lines: int


@message(556)
class LogChunk:
    data: bytes
    offset: int             # where the next read continues
    size: int               # the file's size when read


# --- lost objects: a surviving copy becomes the primary (fixlt) ---------------------------
@message(670)
class PromoteObjectCopy:
    """Owner -> a node daemon, after the node holding the object's primary died: make your
    copy of it (one you pulled) the primary, owned by ``owner_address``.  Ok, or an error
    ``ObjectLostError`` when this node has no sealed copy."""
    object_id: bytes
    owner_address: str
