using System.Runtime.InteropServices;
using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Host;

/// <summary>
/// The device side of every transport, written once: the status state machine (virtio 1.2 §2.1, §3.1.1), feature
/// negotiation with the device's own acceptance, activation, DEVICE_NEEDS_RESET, config generation, and the hand-off
/// of device-initiated work to each queue's owner thread. The simulated mmio/pci register models decode offsets into
/// it; vhost-user maps its messages onto it (SET_FEATURES is negotiation, a ring start activates). A driver that
/// writes in the wrong order is refused and logged, never crashed on.
/// </summary>
public sealed class VirtioDeviceHost<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>Events kept in <see cref="Events"/>; later ones are dropped.</summary>
    public const int MaxEvents = 512;
    private readonly IVirtioDevice<TMem> _device;
    private readonly IDeviceHostTransport<TMem> _transport;
    private readonly QueueMailbox[] _mailboxes;
    private readonly List<string> _events = new();
    private readonly object _lock = new();
    private DeviceContext<TMem>? _context;
    private int _configGeneration;
    private string? _featuresRefusal;

    /// <summary>A host for <paramref name="device"/> behind <paramref name="transport"/>; <paramref name="legacy"/> for legacy (pre-1.0) interfaces.</summary>
    public VirtioDeviceHost(IVirtioDevice<TMem> device, IDeviceHostTransport<TMem> transport, bool legacy = false)
    {
        _device = device;
        _transport = transport;
        Legacy = legacy;
        _mailboxes = new QueueMailbox[device.QueueCount];
        for (int i = 0; i < _mailboxes.Length; i++) _mailboxes[i] = new QueueMailbox();
        DirectIo = new DirectIoFence(device.QueueCount);
    }

    /// <summary>
    /// The I/O devices do straight on host addresses (<see cref="IDeviceMemory.MapForIo"/>): a transport that changes
    /// translations (an IOTLB invalidation) waits on it before it confirms the change.
    /// </summary>
    public DirectIoFence DirectIo { get; }

    /// <summary>The device model.</summary>
    public IVirtioDevice<TMem> Device => _device;
    /// <summary>Legacy interface: features above bit 31 are not offered and there is no FEATURES_OK.</summary>
    public bool Legacy { get; private set; }
    /// <summary>
    /// The device status field as the driver reads it. DEVICE_NEEDS_RESET is derived from <see cref="NeedsResetReason"/>
    /// rather than stored, so a status write racing a ring worker's failure cannot lose it.
    /// </summary>
    public DeviceStatus Status
    {
        get => _status | (NeedsResetReason is not null && !Legacy ? DeviceStatus.DeviceNeedsReset : 0);
        private set => _status = value & ~DeviceStatus.DeviceNeedsReset;
    }
    private volatile DeviceStatus _status;
    /// <summary>The features the driver wrote (only offered ones are kept).</summary>
    public ulong DriverFeatures { get; private set; }
    /// <summary>Config generation (§2.5.1): changes with every config change the driver may see.</summary>
    public byte ConfigGeneration => (byte)Volatile.Read(ref _configGeneration);
    /// <summary>Why DEVICE_NEEDS_RESET was set, or null.</summary>
    public string? NeedsResetReason { get => _needsResetReason; private set => _needsResetReason = value; }
    private volatile string? _needsResetReason;
    /// <summary>What the host refused or did, for tests and traces (bounded by <see cref="MaxEvents"/>).</summary>
    public IReadOnlyList<string> Events { get { lock (_events) return _events.ToArray(); } }
    /// <summary>True between activation (DRIVER_OK) and reset.</summary>
    public bool Activated => _context is not null;
    /// <summary>The current activation's context, or null.</summary>
    public DeviceContext<TMem>? Context => _context;
    /// <summary>Offered features as the interface shows them (legacy: the low 32 bits).</summary>
    public ulong DeviceFeatures => Legacy ? _device.DeviceFeatures & 0xFFFF_FFFFUL : _device.DeviceFeatures;

    /// <summary>Records an event (bounded).</summary>
    public void Log(string message)
    {
        lock (_events) if (_events.Count < MaxEvents) _events.Add(message);
    }

    /// <summary>Transitional devices: the interface the driver uses picks the mode; only while reset.</summary>
    public void SelectInterface(bool legacy)
    {
        if (Legacy == legacy) return;
        if (Status != DeviceStatus.Reset) { Log($"refused switching to the {(legacy ? "legacy" : "modern")} interface while initialised"); return; }
        Legacy = legacy;
    }

    /// <summary>Device status write (§2.1.1: the driver never clears a bit except by writing 0).</summary>
    public void WriteStatus(DeviceStatus value)
    {
        if (value == DeviceStatus.Reset) { Reset(); return; }
        var old = Status;
        if ((old & ~value & ~DeviceStatus.DeviceNeedsReset) != 0)
        {
            Log($"refused status write {value}: clears bits of {old} (only a write of 0 resets)");
            return;
        }
        var added = value & ~old & ~DeviceStatus.DeviceNeedsReset;
        if (added.HasFlag(DeviceStatus.Failed))
        {
            Status = old | DeviceStatus.Failed;
            Log("driver set FAILED");
            return;
        }
        if (added.HasFlag(DeviceStatus.Driver) && !value.HasFlag(DeviceStatus.Acknowledge))
        {
            Log($"refused status write {value}: DRIVER before ACKNOWLEDGE");
            return;
        }
        if (added.HasFlag(DeviceStatus.FeaturesOk))
        {
            if (Legacy) { Log("refused FEATURES_OK: legacy devices have no FEATURES_OK"); return; }
            if (!value.HasFlag(DeviceStatus.Driver)) { Log($"refused status write {value}: FEATURES_OK before DRIVER"); return; }
            if (!_device.AcceptFeatures(DriverFeatures, out var why))
            {
                // §3.1.1: the device leaves FEATURES_OK clear; the driver must read it back.
                Status = value & ~DeviceStatus.FeaturesOk;
                _featuresRefusal = why;
                Log($"features {VirtioFeature.Describe(DriverFeatures, _device.DeviceId)} rejected: {why}");
                return;
            }
        }
        if (added.HasFlag(DeviceStatus.DriverOk))
        {
            bool ready = Legacy ? value.HasFlag(DeviceStatus.Driver) : value.HasFlag(DeviceStatus.FeaturesOk);
            if (!ready) { Log($"refused status write {value}: DRIVER_OK before {(Legacy ? "DRIVER" : "FEATURES_OK")}"); return; }
            Status = value | (old & DeviceStatus.DeviceNeedsReset);
            Activate();
            return;
        }
        Status = value | (old & DeviceStatus.DeviceNeedsReset);
    }

    /// <summary>Driver features write; refused after FEATURES_OK, bits never offered are dropped and logged.</summary>
    public void WriteDriverFeatures(ulong features)
    {
        if (Status.HasFlag(DeviceStatus.FeaturesOk) || Status.HasFlag(DeviceStatus.DriverOk))
        {
            Log("refused driver features write after FEATURES_OK");
            return;
        }
        if (!Status.HasFlag(DeviceStatus.Driver)) Log("warning: driver features written before DRIVER");
        ulong extra = features & ~DeviceFeatures;
        if (extra != 0) Log($"driver asked for features the device does not offer ({VirtioFeature.Describe(extra)}): dropped");
        DriverFeatures = features & DeviceFeatures;
    }

    /// <summary>
    /// For transports that set features in one step (vhost-user SET_FEATURES): ACKNOWLEDGE | DRIVER, the features,
    /// FEATURES_OK, through the same rules as a status register. A device that was active is reset first. Returns false
    /// with the device's reason when it refuses them.
    /// </summary>
    public bool NegotiateFeatures(ulong features, out string? reason)
    {
        if (Status != DeviceStatus.Reset) Reset();
        _featuresRefusal = null;
        var s = DeviceStatus.Acknowledge | DeviceStatus.Driver;
        WriteStatus(s);
        WriteDriverFeatures(features);
        if (!Legacy) WriteStatus(s | DeviceStatus.FeaturesOk);
        if (!Legacy && !Status.HasFlag(DeviceStatus.FeaturesOk))
        {
            reason = _featuresRefusal ?? $"FEATURES_OK refused: {Events.LastOrDefault()}";
            return false;
        }
        reason = null;
        return true;
    }

    private void Activate()
    {
        var queues = _transport.CreateQueues(DriverFeatures, out var failure);
        if (queues is null)
        {
            SetNeedsReset(failure ?? "queues cannot be set up", -1);
            return;
        }
        var ctx = new DeviceContext<TMem>(this, DriverFeatures, queues);
        _context = ctx;
        Log($"DRIVER_OK: features {VirtioFeature.Describe(DriverFeatures, _device.DeviceId)}, {queues.Count(q => q is not null)} queue(s) live");
        _device.Activate(ctx);
    }

    /// <summary>
    /// Transports that start queues one by one (vhost-user): activates the device if it is not yet (an implied
    /// DRIVER_OK). Returns false if it cannot be (features not negotiated, or a queue setup failure).
    /// </summary>
    public bool EnsureActivated()
    {
        lock (_lock)
        {
            if (_context is not null) return true;
            if (!Legacy && !Status.HasFlag(DeviceStatus.FeaturesOk)) { Log("refused activation: features not negotiated"); return false; }
        }
        WriteStatus(Status | DeviceStatus.DriverOk);
        return _context is not null;
    }

    /// <summary>
    /// <paramref name="queue"/> is live: the device sees it from now on. Call on the queue's owner thread before it
    /// serves, or while it does not run. False if the device is not active (reset meanwhile).
    /// </summary>
    public bool StartQueue(int queue, DeviceQueue<TMem> q)
    {
        lock (_lock)
        {
            if (_context is not { } ctx) return false;
            ctx.Queues[queue] = q;
            return true;
        }
    }

    /// <summary>
    /// On <paramref name="queue"/>'s owner thread, as it stops serving and before <see cref="StopQueue"/>: the device
    /// finishes what it has in flight there (<see cref="IVirtioDevice{TMem}.QueueStopping"/>), so no I/O still uses the
    /// queue's buffers when the memory behind them goes away.
    /// </summary>
    public void QuiesceQueue(int queue)
    {
        var ctx = _context;
        if (ctx is null || (uint)queue >= (uint)_mailboxes.Length || ctx.Queues[queue] is null) return;
        _device.QueueStopping(queue);
    }

    /// <summary>The queue stopped (its owner thread has ended); the device no longer sees it.</summary>
    public void StopQueue(int queue)
    {
        lock (_lock) if (_context is { } ctx) ctx.Queues[queue] = null;
    }

    /// <summary>
    /// On <paramref name="queue"/>'s owner thread: runs posted work, then the device's handler if the driver kicked
    /// (<paramref name="kicked"/>) or the device asked to be woken; a queue that broke sets DEVICE_NEEDS_RESET.
    /// </summary>
    public void ServiceQueue(int queue, bool kicked)
    {
        var ctx = _context;
        if (ctx is null || (uint)queue >= (uint)_mailboxes.Length) return;
        bool woken = _mailboxes[queue].TakeWork();
        if (!kicked && !woken) return;
        var q = ctx.Queues[queue];
        if (q is null || NeedsResetReason is not null) return;
        _device.QueueNotify(queue);
        if (q.IsBroken) SetNeedsReset(ctx, $"queue {queue}: {q.Error}: {q.ErrorDetail}", queue);
    }

    /// <summary>True if device-initiated work waits for <paramref name="queue"/>'s owner thread.</summary>
    public bool HasWork(int queue) => (uint)queue < (uint)_mailboxes.Length && _mailboxes[queue].HasWork;

    /// <summary>Milliseconds until <paramref name="queue"/>'s next timed wake, -1 if none (a poll timeout).</summary>
    public int MillisecondsToDeadline(int queue) => _mailboxes[queue].MillisecondsToDeadline();

    /// <summary>The event sources <paramref name="queue"/>'s owner thread polls, and a version that changes with them.</summary>
    public (DeviceEventSource[] Sources, int Version) EventSources(int queue) => (_mailboxes[queue].Sources, _mailboxes[queue].SourcesVersion);

    /// <summary>
    /// Forget everything negotiated (status 0, a connection that ended). Every owner thread must have stopped: the
    /// device is reset and every queue's pending work and event sources are dropped.
    /// </summary>
    public void Reset()
    {
        lock (_lock)
        {
            _context = null;
            Status = DeviceStatus.Reset;
            DriverFeatures = 0;
            NeedsResetReason = null;
        }
        _device.Reset();
        foreach (var m in _mailboxes) m.Clear();
        Log("reset");
    }

    /// <summary>§2.1.2: the device signals it cannot go on; the driver must reset it. Any thread.</summary>
    public void SetNeedsReset(string reason, int queue)
    {
        lock (_lock)
        {
            if (NeedsResetReason is not null) return;
            NeedsResetReason = reason;   // which sets DEVICE_NEEDS_RESET in Status (modern interface)
            Interlocked.Increment(ref _configGeneration);
        }
        Log("DEVICE_NEEDS_RESET: " + reason);
        _transport.NeedsReset(reason, queue);
        _transport.ConfigInterrupt();
    }

    /// <summary>Config read with bounds: bytes past the end read as zero and are logged.</summary>
    public void ReadConfig(int offset, Span<byte> dst)
    {
        dst.Clear();
        if (offset < 0 || offset >= _device.ConfigSize) { Log($"config read at {offset} past the end ({_device.ConfigSize} bytes)"); return; }
        int n = Math.Min(dst.Length, _device.ConfigSize - offset);
        _device.ReadConfig(offset, dst[..n]);
    }

    /// <summary>Config write with bounds: a write past the end is refused whole and logged.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> src)
    {
        if (offset < 0 || offset + src.Length > _device.ConfigSize)
        {
            Log($"refused config write of {src.Length} bytes at {offset}: past the end ({_device.ConfigSize} bytes)");
            return;
        }
        _device.WriteConfig(offset, src);
        Interlocked.Increment(ref _configGeneration);
    }

    /// <summary>Device-initiated config change (e.g. capacity resize): bump the generation, notify the driver.</summary>
    public void ConfigChanged()
    {
        Interlocked.Increment(ref _configGeneration);
        _transport.ConfigInterrupt();
    }

    internal bool IsCurrent(DeviceContext<TMem> ctx) => ReferenceEquals(_context, ctx);

    // Calls from a context: a stale one (kept by a host thread across a reset) does nothing.
    internal void Interrupt(DeviceContext<TMem> ctx, int queue) { if (IsCurrent(ctx)) _transport.Interrupt(queue); }
    internal void SetNeedsReset(DeviceContext<TMem> ctx, string reason, int queue) { if (IsCurrent(ctx)) SetNeedsReset(reason, queue); }
    internal void ConfigChanged(DeviceContext<TMem> ctx) { if (IsCurrent(ctx)) ConfigChanged(); }

    internal void Wake(DeviceContext<TMem> ctx, int queue)
    {
        if (!IsCurrent(ctx)) return;
        _mailboxes[CheckQueue(queue)].RequestWake();
        _transport.Wake(queue);
    }

    internal void WakeAfter(DeviceContext<TMem> ctx, int queue, TimeSpan delay)
    {
        if (!IsCurrent(ctx)) return;
        _mailboxes[CheckQueue(queue)].WakeAt(delay < TimeSpan.Zero ? TimeSpan.Zero : delay);
        // The owner thread recomputes its poll timeout from the new deadline.
        _transport.Wake(queue);
    }

    internal void Post(DeviceContext<TMem> ctx, int queue, Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (!IsCurrent(ctx)) return;
        _mailboxes[CheckQueue(queue)].Post(work);
        _transport.Wake(queue);
    }

    internal IDisposable AddEventSource(DeviceContext<TMem> ctx, int queue, SafeHandle handle, Action onReadable)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ArgumentNullException.ThrowIfNull(onReadable);
        if (!_transport.PollsEventSources)
            throw new NotSupportedException("this host has no fd event loop (the simulated machine runs device work from Poll): use Wake, Post or WakeAfter");
        if (!IsCurrent(ctx)) throw new InvalidOperationException("the device context is no longer active (the device was reset)");
        var s = _mailboxes[CheckQueue(queue)].Add(handle, onReadable);
        _transport.Wake(queue);
        return s;
    }

    private int CheckQueue(int queue) =>
        (uint)queue < (uint)_mailboxes.Length ? queue : throw new ArgumentOutOfRangeException(nameof(queue), $"queue {queue} does not exist (the device has {_mailboxes.Length})");
}
