using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform.Transports;

/// <summary>Per-queue registers as the driver programs them.</summary>
internal sealed class QueueRegisters
{
    public ushort Size;
    public bool Ready;
    public ulong Desc, Driver, Device;
    public uint LegacyPfn;
    public void Clear() { Size = 0; Ready = false; Desc = Driver = Device = 0; LegacyPfn = 0; }
}

/// <summary>
/// The device side of any register transport, written once: the status state machine (virtio 1.2 §2.1, §3.1.1),
/// feature negotiation, queue configuration and activation, interrupts, DEVICE_NEEDS_RESET. The mmio and pci register
/// models only decode offsets into these calls. A driver that writes in the wrong order is refused and logged, never
/// crashed on.
/// </summary>
public sealed class VirtioTransportCore<TMem> where TMem : struct, IDeviceMemory
{
    public const int MaxEvents = 512;
    private readonly IVirtioDevice<TMem> _device;
    private readonly TMem _memory;
    private readonly QueueRegisters[] _queues;
    private readonly List<string> _events = new();
    private DeviceQueue<TMem>?[] _live = [];
    private readonly HashSet<int> _pendingNotify = new();

    public VirtioTransportCore(IVirtioDevice<TMem> device, TMem memory, bool legacy, string name)
    {
        _device = device;
        _memory = memory;
        Legacy = legacy;
        Name = name;
        _queues = new QueueRegisters[device.QueueCount];
        for (int i = 0; i < _queues.Length; i++) _queues[i] = new QueueRegisters();
    }

    public string Name { get; }
    public bool Legacy { get; private set; }
    public IVirtioDevice<TMem> Device => _device;
    public DeviceStatus Status { get; private set; }
    public ulong DriverFeatures { get; private set; }
    public uint InterruptStatus { get; private set; }
    public byte ConfigGeneration { get; private set; }
    public IReadOnlyList<string> Events => _events;
    public string? NeedsResetReason { get; private set; }
    public int QueueCount => _queues.Length;
    public bool Activated => _live.Length > 0;
    /// <summary>When set, notifications are queued and run by <see cref="RunPending"/> (many requests in flight).</summary>
    public bool Deferred { get; set; }
    /// <summary>Raised when the interrupt line goes up.</summary>
    public event Action? InterruptRaised;
    /// <summary>Legacy page size (mmio v1 GuestPageSize; 4096 for pci).</summary>
    public uint GuestPageSize { get; set; } = 4096;
    public uint LegacyQueueAlign { get; set; } = 4096;
    /// <summary>Queue size after reset: PCI's queue_size starts at the maximum (§4.1.4.3), mmio's QueueNum at 0.</summary>
    public ushort DefaultQueueSize
    {
        get;
        set { field = value; foreach (var q in _queues) if (!q.Ready) q.Size = value; }
    }

    /// <summary>Transitional PCI devices: the interface the driver uses picks the mode; only while reset.</summary>
    internal void SelectInterface(bool legacy)
    {
        if (Legacy == legacy) return;
        if (Status != DeviceStatus.Reset) { Log($"refused switching to the {(legacy ? "legacy" : "modern")} interface while initialised"); return; }
        Legacy = legacy;
    }

    public ulong DeviceFeatures => Legacy ? _device.DeviceFeatures & 0xFFFF_FFFFUL : _device.DeviceFeatures;

    public void Log(string message)
    {
        if (_events.Count < MaxEvents) _events.Add(message);
    }

    internal QueueRegisters? Queue(int index) => (uint)index < (uint)_queues.Length ? _queues[index] : null;

    /// <summary>Device status write (§2.1.1: the driver never clears a bit except by writing 0).</summary>
    public void WriteStatus(DeviceStatus value)
    {
        if (value == DeviceStatus.Reset) { DoReset(); return; }
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
                Log($"features {VirtioFeature.Describe(DriverFeatures, _device.DeviceId)} rejected: {why}");
                return;
            }
        }
        if (added.HasFlag(DeviceStatus.DriverOk))
        {
            bool ready = Legacy ? value.HasFlag(DeviceStatus.Driver) : value.HasFlag(DeviceStatus.FeaturesOk);
            if (!ready) { Log($"refused status write {value}: DRIVER_OK before {(Legacy ? "DRIVER" : "FEATURES_OK")}"); return; }
            Status = value;
            Activate();
            return;
        }
        Status = value | (old & DeviceStatus.DeviceNeedsReset);
    }

    private void DoReset()
    {
        _device.Reset();
        foreach (var q in _queues) { q.Clear(); q.Size = DefaultQueueSize; }
        _live = [];
        _pendingNotify.Clear();
        Status = DeviceStatus.Reset;
        DriverFeatures = 0;
        InterruptStatus = 0;
        NeedsResetReason = null;
        LastNotificationData = null;
        Log("reset");
    }

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

    /// <summary>True if queue registers may still be written (before DRIVER_OK, §3.1.1 step 7).</summary>
    internal bool QueueWritable(int index, string what)
    {
        if (Queue(index) is null) { Log($"refused {what}: queue {index} does not exist"); return false; }
        if (Status.HasFlag(DeviceStatus.DriverOk)) { Log($"refused {what} on queue {index} after DRIVER_OK"); return false; }
        return true;
    }

    /// <summary>Queue enable (QueueReady / queue_enable / legacy PFN): validates size before accepting.</summary>
    internal void EnableQueue(int index)
    {
        var q = _queues[index];
        // Packed rings may have any size 1..32768 (§2.8.10.1); split rings need a power of two (§2.7).
        bool packed = !Legacy && VirtioFeature.Has(DriverFeatures, VirtioFeature.RingPacked);
        if (!SplitRingLayout.IsValidSize(q.Size, packed) || q.Size > _device.MaxQueueSize)
        {
            Log($"refused enabling queue {index}: size {q.Size} is {(q.Size == 0 ? "zero" : q.Size > _device.MaxQueueSize ? $"above the maximum {_device.MaxQueueSize}" : "not a power of two")}");
            return;
        }
        q.Ready = true;
    }

    private void Activate()
    {
        var live = new DeviceQueue<TMem>?[_queues.Length];
        var options = QueueOptions.FromFeatures(DriverFeatures);
        for (int i = 0; i < _queues.Length; i++)
        {
            var q = _queues[i];
            if (!q.Ready) continue;
            SplitRingLayout layout = Legacy
                ? SplitRingLayout.Legacy(q.Size, (ulong)q.LegacyPfn * GuestPageSize, options.EventIdx, RingEndian.Little, LegacyQueueAlign)
                : new SplitRingLayout(q.Size, q.Desc, q.Driver, q.Device, options.EventIdx, RingEndian.Little);
            var dq = new DeviceQueue<TMem>(_memory, layout, options);
            var st = dq.CheckRings();
            if (st != MemStatus.Ok)
            {
                SetNeedsReset($"queue {i} {(options.Packed ? "packed" : "split")} rings at desc 0x{layout.Desc:x} driver 0x{layout.Avail:x} device 0x{layout.Used:x} are not accessible: {st.Describe()}");
                return;
            }
            live[i] = dq;
        }
        _live = live;
        Log($"DRIVER_OK: features {VirtioFeature.Describe(DriverFeatures, _device.DeviceId)}, {live.Count(q => q is not null)} queue(s) live");
        _device.Activate(new DeviceContext<TMem>(DriverFeatures, live, RaiseUsed, SetNeedsReset));
    }

    /// <summary>§2.1.2: the device signals it cannot go on; the driver must reset it.</summary>
    public void SetNeedsReset(string reason)
    {
        if (Status.HasFlag(DeviceStatus.DeviceNeedsReset)) return;
        NeedsResetReason = reason;
        Log("DEVICE_NEEDS_RESET: " + reason);
        if (!Legacy) Status |= DeviceStatus.DeviceNeedsReset;
        InterruptStatus |= 2;
        ConfigGeneration++;
        InterruptRaised?.Invoke();
    }

    private void RaiseUsed(int queue)
    {
        InterruptStatus |= 1;
        InterruptRaised?.Invoke();
    }

    /// <summary>
    /// mmio QueueNotify (§4.2.2): the queue index, or with NOTIFICATION_DATA the whole notification value
    /// (vqn | next_off &lt;&lt; 16 | next_wrap &lt;&lt; 31).
    /// </summary>
    public void NotifyRegister(uint value)
    {
        if (!Legacy && VirtioFeature.Has(DriverFeatures, VirtioFeature.NotificationData)) NotifyWithData((int)(value & 0xFFFF), value);
        else Notify((int)value);
    }

    /// <summary>
    /// A notification for <paramref name="index"/> carrying <paramref name="value"/> (§2.9). The data is a hint: one that
    /// names another queue or an impossible position is logged and the notification handled as a plain one.
    /// </summary>
    public void NotifyWithData(int index, uint value)
    {
        if (!Legacy && VirtioFeature.Has(DriverFeatures, VirtioFeature.NotificationData) && (uint)index < (uint)_live.Length && _live[index] is { } q)
        {
            if ((value & 0xFFFF) != (uint)index) Log($"notification data 0x{value:x8} names queue {value & 0xFFFF} but was written for queue {index}");
            else if (!q.AcceptNotificationData((ushort)(value >> 16))) Log($"notification data 0x{value:x8} for queue {index} names an impossible position");
            else LastNotificationData = value;
        }
        Notify(index);
    }

    /// <summary>The last accepted NOTIFICATION_DATA value (vqn | next_off &lt;&lt; 16 | next_wrap &lt;&lt; 31).</summary>
    public uint? LastNotificationData { get; private set; }

    public void Notify(int index)
    {
        if (!Status.HasFlag(DeviceStatus.DriverOk) || (uint)index >= (uint)_live.Length || _live[index] is null)
        {
            Log($"ignored notify for queue {index}: not set up");
            return;
        }
        if (Status.HasFlag(DeviceStatus.DeviceNeedsReset) || NeedsResetReason is not null) return;
        if (Deferred) { _pendingNotify.Add(index); return; }
        Run(index);
    }

    private void Run(int index)
    {
        _device.QueueNotify(index);
        var q = _live[index]!;
        if (q.IsBroken) SetNeedsReset($"queue {index}: {q.Error}: {q.ErrorDetail}");
    }

    /// <summary>Runs deferred notifications; returns how many queues ran.</summary>
    public int RunPending()
    {
        if (_pendingNotify.Count == 0) return 0;
        var list = _pendingNotify.ToArray();
        _pendingNotify.Clear();
        foreach (var i in list)
            if (NeedsResetReason is null && _live.Length > i && _live[i] is not null) Run(i);
        return list.Length;
    }

    public uint ReadAndClearInterrupt()
    {
        uint v = InterruptStatus;
        InterruptStatus = 0;
        return v;
    }

    public void AckInterrupt(uint bits) => InterruptStatus &= ~bits;

    /// <summary>Config read with bounds: bytes past the end read as zero and are logged.</summary>
    public void ReadConfig(int offset, Span<byte> dst)
    {
        dst.Clear();
        if (offset < 0 || offset >= _device.ConfigSize) { Log($"config read at {offset} past the end ({_device.ConfigSize} bytes)"); return; }
        int n = Math.Min(dst.Length, _device.ConfigSize - offset);
        _device.ReadConfig(offset, dst[..n]);
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> src)
    {
        if (offset < 0 || offset + src.Length > _device.ConfigSize)
        {
            Log($"refused config write of {src.Length} bytes at {offset}: past the end ({_device.ConfigSize} bytes)");
            return;
        }
        _device.WriteConfig(offset, src);
        ConfigGeneration++;
    }

    /// <summary>Device-initiated config change (e.g. capacity resize): bump generation, interrupt.</summary>
    public void ConfigChanged()
    {
        ConfigGeneration++;
        InterruptStatus |= 2;
        InterruptRaised?.Invoke();
    }
}
