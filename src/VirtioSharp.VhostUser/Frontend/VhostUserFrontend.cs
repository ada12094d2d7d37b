using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Frontend;

/// <summary>
/// A vhost-user front-end: owns guest memory in a memfd shared with the back-end and presents the back-end to the
/// VirtioSharp driver core as an <see cref="IVirtioTransport"/>, so the same drivers (BlkDriver, ...) that run on the
/// simulated platform drive real back-ends such as qemu-storage-daemon. Replies from the back-end are validated like
/// any other input from a peer. With <see cref="VhostUserFrontendOptions.SharedWindowSize"/> it shares only a window of
/// rings and a bounce pool (<see cref="SharedWindowDmaPlatform"/>): its other memory is a memfd the back-end never gets.
/// </summary>
public sealed class VhostUserFrontend : IVirtioTransport, IDisposable
{
    private readonly FdSocket _sock;
    private readonly SafeFd _memFd;
    private readonly MappedRegion _map;
    private readonly SafeFd? _windowFd;
    private readonly MappedRegion? _windowMap;
    private readonly Lock _sockLock = new();   // a request and its reply, from the driver's thread or the IOTLB thread
    private readonly FdSocket? _channel;
    private readonly Thread? _channelThread;
    private readonly List<string> _channelFaults = new();
    private readonly ulong _protocolFeatures;
    private readonly EventFd?[] _kick;
    private readonly EventFd?[] _call;
    private DeviceStatus _status;
    private readonly InvalidationMode _invalidation;
    private bool _protocolBit;
    private readonly SafeFd? _logFd;
    private readonly MappedRegion? _logMap;
    private readonly byte[]? _ownConfig;   // the config space this front-end serves itself (back-end without CONFIG)
    private readonly int _replyTimeoutMs;
    private readonly List<SafeFd> _replyFds = new();   // under _sockLock: descriptors that came with a reply (closed)
    private string? _broken;   // under _sockLock: why the connection can no longer carry requests

    private VhostUserFrontend(FdSocket sock, DeviceId deviceId, VhostUserFrontendOptions o)
    {
        _sock = sock;
        _logger = o.Logger;
        DeviceId = deviceId;
        _invalidation = o.Iommu ?? InvalidationMode.Strict;
        if (o.ReplyTimeout <= TimeSpan.Zero) throw new ArgumentException($"ReplyTimeout {o.ReplyTimeout} must be positive", nameof(o));
        _replyTimeoutMs = (int)Math.Min(Math.Ceiling(o.ReplyTimeout.TotalMilliseconds), int.MaxValue);
        ulong memorySize = o.MemorySize;
        int maxQueues = o.MaxQueues;
        if (memorySize == 0 || memorySize % GuestAllocator.PageSize != 0)
            throw new ArgumentException($"MemorySize {memorySize} must be a non-zero multiple of 4096", nameof(o));
        if (o.Iommu is not null && o.SharedWindowSize != 0)
            throw new ArgumentException("Iommu and SharedWindowSize cannot be combined: choose the IOMMU front-end or the bounce-only one", nameof(o));
        _kick = [];
        _call = [];
        // A back-end that refuses a message, closes or stays silent fails the connect anywhere below: what was created
        // so far (memfds, mappings, the IOTLB thread and its channel) is released before the exception leaves.
        try
        {
            _memFd = MemFd.Create("virtio-sharp-guest", memorySize);
            _map = MappedRegion.Map(_memFd, memorySize, 0);
            var ram = new GuestRegion(0, memorySize, _map.Address, null, "vhost-user guest");
            if (o.SharedWindowSize == 0)
            {
                Memory = new GuestMemory(ram);
                Platform = new PlainDmaPlatform(Memory, new GuestAllocator(0, memorySize));
            }
            else
            {
                ulong window = o.SharedWindowSize, pool = o.BouncePoolSize == 0 ? window / 2 : o.BouncePoolSize;
                if (window % GuestAllocator.PageSize != 0 || pool >= window)
                    throw new ArgumentException($"SharedWindowSize {window} must be a multiple of 4096 and larger than BouncePoolSize {pool} (the rest holds the rings)", nameof(o));
                WindowBase = memorySize;   // right above private RAM
                _windowFd = MemFd.Create("virtio-sharp-shared-window", window);
                _windowMap = MappedRegion.Map(_windowFd, window, 0);
                Memory = new GuestMemory(ram, new GuestRegion(WindowBase, window, _windowMap.Address, null, "shared window"));
                var p = new SharedWindowDmaPlatform(Memory, new GuestAllocator(0, memorySize), WindowBase, window);
                Platform = p;
                BouncePool = new BouncePool(p, pool);
            }
            // Page 0 stays unused: a legacy-style PFN of 0 would mean "no queue" to some back-ends.
            Platform.Allocator.Allocate(GuestAllocator.PageSize);

            Call(VhostRequest.SetOwner);
            ulong features = CallU64(VhostRequest.GetFeatures);
            _protocolBit = (features & (1UL << VhostHeader.ProtocolFeaturesBit)) != 0;
            if (_protocolBit)
            {
                ulong offered = CallU64(VhostRequest.GetProtocolFeatures);
                ulong want = offered & ((1UL << VhostProtocolFeature.Mq) | (1UL << VhostProtocolFeature.ReplyAck) | (1UL << VhostProtocolFeature.Config) |
                                        (o.DirtyLog ? 1UL << VhostProtocolFeature.LogShmfd : 0));
                if (o.Iommu is not null) want |= offered & (1UL << VhostProtocolFeature.BackendReq);
                Call(VhostRequest.SetProtocolFeatures, U64(want));
                _protocolFeatures = want;
            }
            if ((_protocolFeatures & (1UL << VhostProtocolFeature.Config)) == 0)
                _ownConfig = OwnConfig(deviceId, o.DeviceConfig);
            if (o.DirtyLog && ((features & (1UL << VhostHeader.LogAllBit)) == 0 || (_protocolFeatures & (1UL << VhostProtocolFeature.LogShmfd)) == 0))
                throw new VhostProtocolException("the back-end does not offer dirty logging (VHOST_F_LOG_ALL and VHOST_USER_PROTOCOL_F_LOG_SHMFD)");
            if (o.Iommu is not null)
            {
                // vhost-user.rst "IOMMU support": the back-end asks for translations on the back-end channel and the
                // front-end's invalidations must be confirmed, so both protocol features are required.
                const ulong needed = 1UL << VhostProtocolFeature.BackendReq | 1UL << VhostProtocolFeature.ReplyAck;
                if ((features & VirtioFeature.Bit(VirtioFeature.AccessPlatform)) == 0 || (_protocolFeatures & needed) != needed)
                    throw new InvalidOperationException("the back-end cannot sit behind this front-end's IOMMU: it must offer ACCESS_PLATFORM and the protocol features BACKEND_REQ and REPLY_ACK; connect without VhostUserFrontendOptions.Iommu");
            }
            int queues = (_protocolFeatures & (1UL << VhostProtocolFeature.Mq)) != 0 ? (int)Math.Min(CallU64(VhostRequest.GetQueueNum), (ulong)maxQueues) : 1;
            QueueCount = Math.Max(1, queues);
            _kick = new EventFd?[QueueCount];
            _call = new EventFd?[QueueCount];

            if (o.Iommu is not null)
            {
                Iommu = new VhostIommuDomain(IovaBase, IovaSize, UserAddress, SendIotlb, o.IommuWritableImpliesReadable);
                var (ours, theirs) = SafeFd.SocketPair();
                using (theirs)
                {
                    try { Call(VhostRequest.SetBackendReqFd, default, [theirs]); }
                    catch { ours.Dispose(); throw; }
                }
                _channel = new FdSocket(ours);
                var domain = Iommu;
                var channel = _channel;
                _channelThread = new Thread(() => domain.Serve(channel, f => { lock (_channelFaults) _channelFaults.Add(f); }))
                { IsBackground = true, Name = "vhost-user-frontend-iotlb" };
                _channelThread.Start();
            }
            // The memory table is what the back-end can ever map: all RAM, or only the shared window.
            Span<byte> mt = stackalloc byte[8 + VhostMemoryRegion.Length];
            mt.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(mt, 1);
            if (_windowMap is { } w)
            {
                new VhostMemoryRegion(WindowBase, (ulong)w.Length, (ulong)w.Address, 0).Write(mt[8..]);
                Call(VhostRequest.SetMemTable, mt, [_windowFd!]);
            }
            else
            {
                new VhostMemoryRegion(0, memorySize, (ulong)_map.Address, 0).Write(mt[8..]);
                Call(VhostRequest.SetMemTable, mt, [_memFd]);
            }
            if (o.DirtyLog)
            {
                // vhost-user.rst "Migration": one bit per 4 KiB page from guest address 0 up to the highest address the
                // back-end can write (the shared window sits above RAM), as QEMU sizes it (whole u64s).
                ulong top = _windowMap is { } win ? WindowBase + (ulong)win.Length : memorySize;
                ulong logBytes = (top / 4096 + 63) / 64 * 8;
                _logFd = MemFd.Create("virtio-sharp-dirty-log", logBytes);
                _logMap = MappedRegion.Map(_logFd, logBytes, 0);
                Span<byte> d = stackalloc byte[LogDescription.WireSize];
                BinaryPrimitives.WriteUInt64LittleEndian(d, logBytes);
                BinaryPrimitives.WriteUInt64LittleEndian(d[8..], 0);
                // vhost-user.rst "Communication": with LOG_SHMFD the back-end answers SET_LOG_BASE, though the message's
                // own entry names no reply payload: DPDK sends none, libvhost-user 8 bytes (the log size again), this
                // project's back-end a u64 0. Any of those is accepted, the value is not a status; anything else breaks.
                Span<byte> reply = stackalloc byte[8];
                Exchange(VhostRequest.SetLogBase, d, [_logFd], false, reply, emptyAllowed: true);
            }
            _logger?.LogInformation("vhost-user front-end for {Device}: {Sharing}", deviceId, SharingDescription(memorySize));
        }
        catch
        {
            Release();
            throw;
        }
    }

    private readonly ILogger? _logger;

    /// <summary>What the back-end can reach, in one line (the front-end's share of the DMA decision).</summary>
    private string SharingDescription(ulong memorySize) =>
        _windowMap is { } w
            ? $"bounce-only: the memory table holds only a {w.Length >> 10} KiB window at gpa 0x{WindowBase:x} (rings and a {BouncePool!.Size >> 10} KiB bounce pool); the {memorySize >> 20} MiB of RAM stay private"
            : Iommu is not null
                ? $"IOMMU ({_invalidation} invalidation): all {memorySize >> 20} MiB in the memory table, but the back-end learns IOVA translations only through IOTLB MISS/UPDATE, direction-limited"
                : $"direct: all {memorySize >> 20} MiB of RAM in the memory table, guest-physical addresses";

    /// <summary>
    /// The config space a front-end keeps itself when the back-end does not serve one (no VHOST_USER_PROTOCOL_F_CONFIG),
    /// as QEMU's virtio-net does for every vhost-user net back-end (DPDK's vhost among them): the options' bytes, or for a
    /// network device a unicast MAC with the link up and one queue pair.
    /// </summary>
    private static byte[] OwnConfig(DeviceId deviceId, byte[]? given)
    {
        var c = new byte[256];
        if (given is not null)
        {
            if (given.Length > c.Length) throw new ArgumentException($"DeviceConfig has {given.Length} bytes; a config space here is at most {c.Length}", nameof(given));
            given.CopyTo(c, 0);
        }
        else if (deviceId == DeviceId.Network)
        {
            ReadOnlySpan<byte> mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
            mac.CopyTo(c.AsSpan(NetConfig.MacOffset));
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(NetConfig.StatusOffset), (ushort)NetStatus.LinkUp);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(NetConfig.MaxVirtqueuePairsOffset), 1);
        }
        return c;
    }

    /// <summary>True if the front-end serves the config space itself (the back-end offers no VHOST_USER_PROTOCOL_F_CONFIG).</summary>
    public bool OwnsConfig => _ownConfig is not null;

    /// <summary>True if this front-end asked the back-end to log its writes (VHOST_F_LOG_ALL with a shared log).</summary>
    public bool DirtyLogging => _logMap is not null;

    /// <summary>Pages whose bit is set in the dirty log, optionally clearing the log (what QEMU does at each sync).</summary>
    public unsafe long CountDirtyPages(bool clear = false)
    {
        if (_logMap is null) return 0;
        var words = new Span<ulong>((void*)_logMap.Address, (int)((ulong)_logMap.Length / 8));
        long n = 0;
        for (int i = 0; i < words.Length; i++)
        {
            ulong w = clear ? Interlocked.Exchange(ref words[i], 0) : Volatile.Read(ref words[i]);
            n += System.Numerics.BitOperations.PopCount(w);
        }
        return n;
    }

    /// <summary>
    /// Whether the dirty log marks the 4 KiB page holding guest-physical <paramref name="gpa"/> (bit page % 8 of byte
    /// page / 8, vhost-user.rst "Migration"); false without a log or beyond it.
    /// </summary>
    public unsafe bool IsPageDirty(ulong gpa)
    {
        if (_logMap is null) return false;
        ulong page = gpa >> DirtyLog.PageShift;
        if (page / 8 >= (ulong)_logMap.Length) return false;
        return (Volatile.Read(ref ((byte*)_logMap.Address)[page / 8]) & (1 << (int)(page % 8))) != 0;
    }

    /// <summary>Connects to a back-end listening on <paramref name="socketPath"/>, sharing all of its memory.</summary>
    /// <param name="socketPath">The back-end's socket.</param>
    /// <param name="deviceId">The device the back-end serves.</param>
    /// <param name="memorySize">Guest memory to share.</param>
    /// <param name="maxQueues">At most this many queues are used.</param>
    /// <param name="dirtyLog">Ask the back-end to log its writes, as QEMU does while it migrates (see <see cref="VhostUserFrontendOptions.DirtyLog"/>).</param>
    public static VhostUserFrontend Connect(string socketPath, DeviceId deviceId, ulong memorySize = 64UL << 20, int maxQueues = 8, bool dirtyLog = false) =>
        Connect(socketPath, deviceId, new VhostUserFrontendOptions { MemorySize = memorySize, MaxQueues = maxQueues, DirtyLog = dirtyLog });

    /// <summary>Connects to a back-end listening on <paramref name="socketPath"/> with the memory layout of <paramref name="options"/>.</summary>
    public static VhostUserFrontend Connect(string socketPath, DeviceId deviceId, VhostUserFrontendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // A back-end that stopped accepting leaves its backlog full, where connect(2) waits: SO_SNDTIMEO bounds that
            // wait (unix(7)); it has no effect on the front-end's own sends, which are MSG_DONTWAIT with a deadline.
            s.SendTimeout = (int)Math.Clamp(Math.Ceiling(options.ReplyTimeout.TotalMilliseconds), 1, int.MaxValue);
            try { s.Connect(new UnixDomainSocketEndPoint(socketPath)); }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.TryAgain)
            {
                throw new TimeoutException($"the back-end at {socketPath} did not accept the connection within {options.ReplyTimeout.TotalMilliseconds} ms (its listen backlog stays full): is it alive and accepting?", e);
            }
            return new VhostUserFrontend(new FdSocket(s), deviceId, options);
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>The front-end's guest RAM (one memfd shared with the back-end, or private RAM plus the shared window).</summary>
    public GuestMemory Memory { get; }
    /// <summary>The driver's DMA platform over that memory: plain, or a <see cref="SharedWindowDmaPlatform"/>.</summary>
    public IDmaPlatform Platform { get; }
    /// <summary>Bounce-only mode: the pool every buffer is copied through (its <see cref="BouncePool.SlotsHighWater"/> is
    /// the most it ever held); null when all memory is shared.</summary>
    public BouncePool? BouncePool { get; }
    /// <summary>Bounce-only mode: the guest-physical address of the shared window (right above private RAM).</summary>
    public ulong WindowBase { get; }
    /// <summary>True if only the shared window is in the back-end's memory table.</summary>
    public bool BounceOnly => _windowMap is not null;
    /// <summary>IOMMU mode: the domain the driver's IOMMU ops program and the back-end's misses are answered from.</summary>
    public VhostIommuDomain? Iommu { get; }
    /// <summary>IOMMU mode: what went wrong on the back-end channel (malformed messages, access failures).</summary>
    public IReadOnlyList<string> ChannelFaults { get { lock (_channelFaults) return _channelFaults.ToArray(); } }

    // The IOVA aperture of IOMMU mode: above any guest-physical address, so a back-end that mistook an IOVA for a
    // guest-physical address would find no memory there.
    private const ulong IovaBase = 1UL << 40, IovaSize = 1UL << 30;

    private void SendIotlb(ulong iova, ulong size, ulong uaddr, byte perm, byte type)
    {
        Span<byte> m = stackalloc byte[IotlbMsgType.Length];   // per miss and per invalidation: no allocation
        new IotlbRequest(iova, size, uaddr, perm, type).Write(m);
        Call(VhostRequest.IotlbMsg, m);
    }
    /// <inheritdoc/>
    public int QueueCount { get; }
    /// <inheritdoc/>
    public TransportKind Kind => TransportKind.VhostUser;
    /// <inheritdoc/>
    public bool IsLegacy => false;
    /// <inheritdoc/>
    public DeviceId DeviceId { get; }
    /// <inheritdoc/>
    public ulong LegacyAlign => 4096;
    /// <inheritdoc/>
    public byte ConfigGeneration => 0;

    /// <summary>
    /// The environment for a driver probing this back-end: direct ops over the shared memfd; in bounce-only mode a
    /// restricted-memory platform whose policy (the 2018 RFC's platform hook, <see cref="PolicyMode.Rfc2018"/>, since
    /// this front-end never negotiates ACCESS_PLATFORM) picks bounce ops over <see cref="BouncePool"/>.
    /// <paramref name="mode"/> overrides the policy (e.g. <see cref="PolicyMode.PreRfc"/> to show what a driver that skips
    /// the DMA API does to a protected guest).
    /// </summary>
    public DriverEnvironment Environment(int pollBudget = 50, PolicyMode? mode = null) => new()
    {
        Platform = Platform,
        Facts = new PlatformFacts { RestrictedMemory = BounceOnly, BehindIommu = Iommu is not null, Invalidation = _invalidation },
        IommuDomain = Iommu,
        BouncePool = BouncePool,
        Mode = mode ?? (BounceOnly ? PolicyMode.Rfc2018 : PolicyMode.LinuxToday),
        Poll = () => WaitCall(100),
        PollBudget = pollBudget,
        Trace = _logger is { } l ? line => l.LogInformation("{DriverStep}", line) : null,
    };

    /// <summary>
    /// The user address the back-end knows a guest-physical address by. Ring addresses outside the shared window are
    /// sent as the private mapping's address, which no region of the back-end's table covers: it refuses them.
    /// </summary>
    private ulong UserAddress(ulong gpa) => _windowMap is { } w && gpa >= WindowBase && gpa - WindowBase < (ulong)w.Length
        ? (ulong)w.Address + (gpa - WindowBase)
        : (ulong)_map.Address + gpa;

    private static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b;
    }

    // The largest request this front-end sends: the header and GET_CONFIG / SET_CONFIG with a whole config space.
    private const int MaxRequest = VhostHeader.Length + 12 + 256;

    /// <summary>Sends one request, waiting at most the reply timeout for room on the socket. Caller holds _sockLock.</summary>
    private void Send(VhostRequest req, ReadOnlySpan<byte> payload, ReadOnlySpan<SafeFd> fds, bool needReply)
    {
        if (_broken is not null)
            throw new VhostProtocolException($"{req} not sent: the connection to the back-end is unusable since {_broken}; dispose this front-end and connect again");
        Span<byte> m = stackalloc byte[MaxRequest];
        m = m[..(VhostHeader.Length + payload.Length)];
        new VhostHeader((uint)req, VhostHeader.Version | (needReply ? VhostHeader.NeedReplyFlag : 0), (uint)payload.Length).Write(m);
        payload.CopyTo(m[VhostHeader.Length..]);
        if (!_sock.TrySend(m, fds, _replyTimeoutMs, out string? error))
            throw Broken($"{req} could not be sent ({error}): check that the back-end is alive and reading its socket");
    }

    /// <summary>
    /// The one request-reply exchange: sends <paramref name="req"/> and waits at most
    /// <see cref="VhostUserFrontendOptions.ReplyTimeout"/> for its reply, which must name the same request, carry exactly
    /// the flags REPLY and version 1 (as QEMU requires), no descriptors, and exactly <paramref name="reply"/>.Length
    /// payload bytes (or none, if <paramref name="emptyAllowed"/>). Returns the payload size. A missing or malformed
    /// reply breaks the connection (vhost-user.rst: the front-end closes it on a wrong reply), so a late answer can never
    /// be taken for a later request's.
    /// </summary>
    private int Exchange(VhostRequest req, ReadOnlySpan<byte> payload, ReadOnlySpan<SafeFd> fds, bool needReply, Span<byte> reply, bool emptyAllowed = false)
    {
        lock (_sockLock)
        {
            Send(req, payload, fds, needReply);
            Span<byte> hb = stackalloc byte[VhostHeader.Length];
            _replyFds.Clear();
            try
            {
                if (!_sock.ReceiveExact(hb, _replyFds, _replyTimeoutMs)) throw Broken($"the back-end closed the connection instead of answering {req}");
                if (_replyFds.Count > 0) throw Broken($"the back-end's reply to {req} came with {_replyFds.Count} file descriptors; none is expected");
                var h = VhostHeader.Parse(hb);
                if (h.Request != (uint)req || h.Flags != (VhostHeader.Version | VhostHeader.ReplyFlag))
                    throw Broken($"the back-end answered {req} with request {h.Request} flags 0x{h.Flags:x} (expected request {(uint)req} flags 0x{VhostHeader.Version | VhostHeader.ReplyFlag:x})");
                if (h.Size != (uint)reply.Length && !(emptyAllowed && h.Size == 0))
                    throw Broken($"the back-end's reply to {req} has {h.Size} payload bytes, expected {reply.Length}{(emptyAllowed ? " or 0" : "")}");
                if (h.Size > 0 && !_sock.ReceiveExact(reply, null, _replyTimeoutMs)) throw Broken($"the back-end closed the connection inside its reply to {req}");
                return (int)h.Size;
            }
            catch (TimeoutException)
            {
                throw Broken($"the back-end did not answer {req} within {_replyTimeoutMs} ms: check that it is alive and serving this socket, or raise VhostUserFrontendOptions.ReplyTimeout if it is only slow");
            }
            catch (Exception e) when (_broken is null && e is IOException or VhostProtocolException)
            {
                throw Broken($"reading the reply to {req} failed: {e.Message}");
            }
            finally
            {
                foreach (var fd in _replyFds) fd.Dispose();
                _replyFds.Clear();
            }
        }
    }

    /// <summary>Marks the connection unusable, shuts it down (the back-end sees it end) and returns the error to throw.</summary>
    private VhostProtocolException Broken(string why)
    {
        _broken ??= why;
        _sock.Shutdown();
        return new VhostProtocolException(why);
    }

    /// <summary>Sends a request without a reply; with REPLY_ACK, waits for the back-end's verdict.</summary>
    private void Call(VhostRequest req, ReadOnlySpan<byte> payload = default, ReadOnlySpan<SafeFd> fds = default)
    {
        if ((_protocolFeatures & (1UL << VhostProtocolFeature.ReplyAck)) == 0)
        {
            lock (_sockLock) Send(req, payload, fds, false);
            return;
        }
        Span<byte> r = stackalloc byte[8];
        Exchange(req, payload, fds, true, r);
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(r);
        if (v != 0) throw new VhostProtocolException($"back-end rejected {req} (status {v})");
    }

    private ulong CallU64(VhostRequest req)
    {
        Span<byte> r = stackalloc byte[8];
        Exchange(req, default, default, false, r);
        return BinaryPrimitives.ReadUInt64LittleEndian(r);
    }

    /// <inheritdoc/>
    public DeviceStatus GetStatus() => _status;

    /// <inheritdoc/>
    public void SetStatus(DeviceStatus status) => _status = status;

    /// <inheritdoc/>
    public void Reset()
    {
        for (int i = 0; i < QueueCount; i++)
            if (_kick[i] is not null) DeleteQueue(i);
        _status = DeviceStatus.Reset;
    }

    // Without its IOMMU this front-end fills no device IOTLB, so it never lets ACCESS_PLATFORM through (as QEMU with
    // iommu_platform=off): buffer addresses it hands out are guest-physical. With it, they are IOVAs.
    /// <inheritdoc/>
    public ulong GetFeatures() => CallU64(VhostRequest.GetFeatures) & ~(1UL << VhostHeader.ProtocolFeaturesBit) & ~(1UL << VhostHeader.LogAllBit)
        & (Iommu is null ? ~VirtioFeature.Bit(VirtioFeature.AccessPlatform) : ulong.MaxValue)
        & (_ownConfig is not null && DeviceId == DeviceId.Network ? ~FrontendOwnedNetFeatures(_ownConfig) : ulong.MaxValue);

    // A net back-end that leaves the config to the front-end (QEMU-style, e.g. DPDK's vhost) serves only the data queues:
    // the control queue and what rides on it (MQ needs CTRL_VQ, virtio 1.2 §5.1.3.1) would be the front-end's, and this
    // one has none; NET_MTU only when the config this front-end serves names an MTU.
    private static ulong FrontendOwnedNetFeatures(byte[] config) =>
        VirtioFeature.Bit(NetFeature.CtrlVq) | VirtioFeature.Bit(NetFeature.CtrlRx) | VirtioFeature.Bit(NetFeature.CtrlVlan) |
        VirtioFeature.Bit(NetFeature.CtrlRxExtra) | VirtioFeature.Bit(NetFeature.GuestAnnounce) | VirtioFeature.Bit(NetFeature.Mq) |
        VirtioFeature.Bit(NetFeature.CtrlMacAddr) | VirtioFeature.Bit(NetFeature.CtrlGuestOffloads) |
        (BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(NetConfig.MtuOffset)) == 0 ? VirtioFeature.Bit(NetFeature.Mtu) : 0);

    /// <inheritdoc/>
    public void SetFeatures(ulong features) =>
        Call(VhostRequest.SetFeatures, U64(features | (_protocolBit ? 1UL << VhostHeader.ProtocolFeaturesBit : 0) | (DirtyLogging ? 1UL << VhostHeader.LogAllBit : 0)));

    /// <inheritdoc/>
    public ushort GetQueueMaxSize(int queue) => queue < QueueCount ? (ushort)256 : (ushort)0;

    private static byte[] State(int index, uint num)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)index);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), num);
        return b;
    }

    /// <inheritdoc/>
    public void SetupQueue(int queue, DriverQueue ring)
    {
        var l = ring.DeviceLayout;
        Call(VhostRequest.SetVringNum, State(queue, ring.Size));
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(addr, (uint)queue);
        // With ACCESS_PLATFORM the ring addresses are IOVAs too, translated by the back-end's IOTLB.
        ulong A(ulong bus) => Iommu is null ? UserAddress(bus) : bus;
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), A(l.Desc));
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), A(l.Used));
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), A(l.Avail));
        Call(VhostRequest.SetVringAddr, addr);
        // Packed rings start with both wrap counters at 1 (§2.8.1); QEMU 7.2 sends them in bits 15 and 31.
        Call(VhostRequest.SetVringBase, State(queue, ring.IsPacked ? 1u << 15 | 1u << 31 : 0));
        _call[queue]?.Dispose();
        _call[queue] = EventFd.Create(nonBlocking: true);
        Call(VhostRequest.SetVringCall, U64((ulong)queue), [_call[queue]!.Handle]);
        _kick[queue]?.Dispose();
        // Non-blocking: a back-end that fills the counter (it holds the same eventfd) must not stall Notify; a full
        // counter already says "kicked".
        _kick[queue] = EventFd.Create(nonBlocking: true);
        Call(VhostRequest.SetVringKick, U64((ulong)queue), [_kick[queue]!.Handle]);
        if (_protocolBit) Call(VhostRequest.SetVringEnable, State(queue, 1));
    }

    /// <inheritdoc/>
    public void DeleteQueue(int queue)
    {
        if (_protocolBit) Call(VhostRequest.SetVringEnable, State(queue, 0));
        Span<byte> r = stackalloc byte[8];
        Exchange(VhostRequest.GetVringBase, State(queue, 0), default, false, r);
        if (BinaryPrimitives.ReadUInt32LittleEndian(r) != (uint)queue)
            throw new VhostProtocolException($"GET_VRING_BASE for vring {queue} was answered for vring {BinaryPrimitives.ReadUInt32LittleEndian(r)}");
        _kick[queue]?.Dispose();
        _kick[queue] = null;
    }

    /// <summary>The call eventfd of <paramref name="queue"/> (tests play a hostile front-end with it).</summary>
    internal EventFd? CallFd(int queue) => _call[queue];

    /// <inheritdoc/>
    public void Notify(int queue) => _kick[queue]?.Signal();

    /// <inheritdoc/>
    public uint ReadAndAckInterrupt()
    {
        uint isr = 0;
        // RWF_NOWAIT: the back-end shares the call eventfd's open file and may clear O_NONBLOCK on it; a plain read of
        // an empty counter would then wait for its next call.
        foreach (var c in _call)
            if (c is not null && c.Read(out ulong v) == 0 && v != 0) isr = 1;
        return isr;
    }

    /// <summary>Waits up to <paramref name="ms"/> for a used-buffer notification on any queue.</summary>
    public bool WaitCall(int ms)
    {
        var fds = _call.Where(c => c is not null).Select(c => c!.Handle).ToArray();
        if (fds.Length == 0) return false;
        return EventFd.WaitAny(fds, ms) >= 0;
    }

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        // Ask from offset 0, as QEMU does: libvhost-user back-ends ignore the offset and copy from the start.
        int len = offset + destination.Length;
        if (offset < 0 || len > 256) throw new ArgumentOutOfRangeException(nameof(offset), "vhost-user config space is at most 256 bytes");
        if (_ownConfig is not null)
        {
            lock (_ownConfig) _ownConfig.AsSpan(offset, destination.Length).CopyTo(destination);
            return;
        }
        Span<byte> p = stackalloc byte[12 + len];
        p.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], (uint)len);
        Span<byte> r = stackalloc byte[12 + len];
        // vhost-user.rst GET_CONFIG: the reply's size matches the request's; an empty payload is the back-end's error.
        if (Exchange(VhostRequest.GetConfig, p, default, false, r, emptyAllowed: true) == 0)
            throw new VhostProtocolException($"the back-end refused GET_CONFIG for {len} bytes (empty reply)");
        if (BinaryPrimitives.ReadUInt32LittleEndian(r) != 0 || BinaryPrimitives.ReadUInt32LittleEndian(r[4..]) != (uint)len)
            throw new VhostProtocolException($"GET_CONFIG reply names offset {BinaryPrimitives.ReadUInt32LittleEndian(r)} size {BinaryPrimitives.ReadUInt32LittleEndian(r[4..])}, not the request's 0 and {len}");
        r.Slice(12 + offset, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source)
    {
        if (_ownConfig is not null)
        {
            if (offset < 0 || offset + source.Length > _ownConfig.Length) throw new ArgumentOutOfRangeException(nameof(offset), "vhost-user config space is at most 256 bytes");
            lock (_ownConfig) source.CopyTo(_ownConfig.AsSpan(offset));
            return;
        }
        var p = new byte[12 + source.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), (uint)source.Length);
        source.CopyTo(p.AsSpan(12));
        Call(VhostRequest.SetConfig, p);
    }

    /// <summary>Closes the connection and releases the shared memory.</summary>
    public void Dispose() => Release();

    // Also the cleanup of a failed connect, when any field from the memfd on may still be null.
    private void Release()
    {
        foreach (var k in _kick) k?.Dispose();
        foreach (var c in _call) c?.Dispose();
        // Shut down before waiting: a thread blocked in recvmsg keeps its socket open, and a back-end need not close
        // its end of the channel, so only shutdown is sure to wake the IOTLB thread. It may be inside an exchange on the
        // main socket (answering a miss): the shut-down socket ends that at once.
        _sock.Shutdown();
        _channel?.Shutdown();
        _channelThread?.Join(_replyTimeoutMs + 1000);   // an exchange it is in ends within the reply timeout
        _sock.Dispose();
        _channel?.Dispose();
        Memory?.Dispose();
        _map?.Dispose();
        _memFd?.Dispose();
        _windowMap?.Dispose();
        _windowFd?.Dispose();
        _logMap?.Dispose();
        _logFd?.Dispose();
    }
}
