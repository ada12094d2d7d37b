using VirtioSharp.Devices;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform.Transports;

/// <summary>
/// What the simulated mmio and pci register models share: per-queue registers, the interrupt status register, legacy
/// page geometry and NOTIFICATION_DATA decoding. Status, features and activation are the shared
/// <see cref="VirtioDeviceHost{TMem}"/>'s (<see cref="Host"/>); this class only builds queues from the registers and
/// raises the interrupt line. All device work runs on the thread that drives the bus (the queues' owner thread):
/// at a notify, or with <see cref="Deferred"/> (and for device-initiated work) at <see cref="RunPending"/>.
/// </summary>
public sealed class VirtioTransportCore<TMem> : IDeviceHostTransport<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>Events kept; later ones are dropped.</summary>
    public const int MaxEvents = VirtioDeviceHost<TMem>.MaxEvents;
    private readonly TMem _memory;
    private readonly QueueRegisters[] _queues;
    private readonly HashSet<int> _pendingNotify = new();
    private int _wakes;   // device-initiated work is pending somewhere (set from any thread)

    /// <summary>The register-level core for <paramref name="device"/> reaching memory through <paramref name="memory"/>.</summary>
    public VirtioTransportCore(IVirtioDevice<TMem> device, TMem memory, bool legacy, string name)
    {
        _memory = memory;
        Name = name;
        _queues = new QueueRegisters[device.QueueCount];
        for (int i = 0; i < _queues.Length; i++) _queues[i] = new QueueRegisters();
        Host = new VirtioDeviceHost<TMem>(device, this, legacy);
    }

    /// <summary>The status/feature/activation machine shared with every other transport.</summary>
    public VirtioDeviceHost<TMem> Host { get; }
    /// <summary>Name in traces.</summary>
    public string Name { get; }
    /// <summary>Legacy interface in use.</summary>
    public bool Legacy => Host.Legacy;
    /// <summary>The device model.</summary>
    public IVirtioDevice<TMem> Device => Host.Device;
    /// <summary>Device status register.</summary>
    public DeviceStatus Status => Host.Status;
    /// <summary>Features the driver wrote.</summary>
    public ulong DriverFeatures => Host.DriverFeatures;
    /// <summary>Interrupt status: bit 0 used buffers, bit 1 configuration change (§4.1.4.5, §4.2.2).</summary>
    public uint InterruptStatus { get; private set; }
    /// <summary>Config generation.</summary>
    public byte ConfigGeneration => Host.ConfigGeneration;
    /// <summary>What was refused or done.</summary>
    public IReadOnlyList<string> Events => Host.Events;
    /// <summary>Why DEVICE_NEEDS_RESET was set, or null.</summary>
    public string? NeedsResetReason => Host.NeedsResetReason;
    /// <summary>Number of queues.</summary>
    public int QueueCount => _queues.Length;
    /// <summary>True after DRIVER_OK until reset.</summary>
    public bool Activated => Host.Activated;
    /// <summary>When set, notifications are queued and run by <see cref="RunPending"/> (many requests in flight).</summary>
    public bool Deferred { get; set; }
    /// <summary>
    /// Fault injection: the device's queues keep SMP barriers even when VIRTIO_F_ORDER_PLATFORM was negotiated (a device
    /// bug), to show what a driver on a weakly ordered platform then sees.
    /// </summary>
    public bool IgnoreOrderPlatform { get; set; }
    /// <summary>Raised when the interrupt line goes up.</summary>
    public event Action? InterruptRaised;
    /// <summary>Legacy page size (mmio v1 GuestPageSize; 4096 for pci).</summary>
    public uint GuestPageSize { get; set; } = 4096;
    /// <summary>Legacy used-ring alignment (mmio v1 QueueAlign).</summary>
    public uint LegacyQueueAlign { get; set; } = 4096;
    /// <summary>Queue size after reset: PCI's queue_size starts at the maximum (§4.1.4.3), mmio's QueueNum at 0.</summary>
    public ushort DefaultQueueSize
    {
        get;
        set { field = value; foreach (var q in _queues) if (!q.Ready) q.Size = value; }
    }

    /// <summary>Offered features as this interface shows them.</summary>
    public ulong DeviceFeatures => Host.DeviceFeatures;

    internal void SelectInterface(bool legacy) => Host.SelectInterface(legacy);

    /// <summary>Records an event.</summary>
    public void Log(string message) => Host.Log(message);

    internal QueueRegisters? Queue(int index) => (uint)index < (uint)_queues.Length ? _queues[index] : null;

    /// <summary>Device status register write.</summary>
    public void WriteStatus(DeviceStatus value)
    {
        Host.WriteStatus(value);
        if (value == DeviceStatus.Reset) ResetRegisters();
    }

    private void ResetRegisters()
    {
        foreach (var q in _queues) { q.Clear(); q.Size = DefaultQueueSize; }
        _pendingNotify.Clear();
        InterruptStatus = 0;
        LastNotificationData = null;
    }

    /// <summary>Driver features register write.</summary>
    public void WriteDriverFeatures(ulong features) => Host.WriteDriverFeatures(features);

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
        ushort max = Device.MaxQueueSize;
        if (!SplitRingLayout.IsValidSize(q.Size, packed) || q.Size > max)
        {
            Log($"refused enabling queue {index}: size {q.Size} is {(q.Size == 0 ? "zero" : q.Size > max ? $"above the maximum {max}" : "not a power of two")}");
            return;
        }
        q.Ready = true;
    }

    DeviceQueue<TMem>?[]? IDeviceHostTransport<TMem>.CreateQueues(ulong features, out string? failure)
    {
        failure = null;
        var live = new DeviceQueue<TMem>?[_queues.Length];
        var options = QueueOptions.ForDevice(features);
        if (IgnoreOrderPlatform) options = options with { Barriers = Dma.BarrierKind.Smp };
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
                failure = $"queue {i} {(options.Packed ? "packed" : "split")} rings at desc 0x{layout.Desc:x} driver 0x{layout.Avail:x} device 0x{layout.Used:x} are not accessible: {st.Describe()}";
                return null;
            }
            live[i] = dq;
        }
        return live;
    }

    void IDeviceHostTransport<TMem>.Interrupt(int queue)
    {
        InterruptStatus |= 1;
        InterruptRaised?.Invoke();
    }

    void IDeviceHostTransport<TMem>.ConfigInterrupt()
    {
        InterruptStatus |= 2;
        InterruptRaised?.Invoke();
    }

    void IDeviceHostTransport<TMem>.NeedsReset(string reason, int queue) { }

    // The simulated machine has no threads of its own: device-initiated work waits for the next RunPending.
    void IDeviceHostTransport<TMem>.Wake(int queue) => Volatile.Write(ref _wakes, 1);

    bool IDeviceHostTransport<TMem>.PollsEventSources => false;

    /// <summary>§2.1.2: the device signals it cannot go on; the driver must reset it.</summary>
    public void SetNeedsReset(string reason) => Host.SetNeedsReset(reason, -1);

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
        if (!Legacy && VirtioFeature.Has(DriverFeatures, VirtioFeature.NotificationData) && LiveQueue(index) is { } q)
        {
            if ((value & 0xFFFF) != (uint)index) Log($"notification data 0x{value:x8} names queue {value & 0xFFFF} but was written for queue {index}");
            else if (!q.AcceptNotificationData((ushort)(value >> 16))) Log($"notification data 0x{value:x8} for queue {index} names an impossible position");
            else LastNotificationData = value;
        }
        Notify(index);
    }

    /// <summary>The last accepted NOTIFICATION_DATA value (vqn | next_off &lt;&lt; 16 | next_wrap &lt;&lt; 31).</summary>
    public uint? LastNotificationData { get; private set; }

    private DeviceQueue<TMem>? LiveQueue(int index) =>
        Host.Context is { } ctx && (uint)index < (uint)ctx.Queues.Length ? ctx.Queues[index] : null;

    /// <summary>The driver notified queue <paramref name="index"/>.</summary>
    public void Notify(int index)
    {
        if (!Status.HasFlag(DeviceStatus.DriverOk) || LiveQueue(index) is null)
        {
            Log($"ignored notify for queue {index}: not set up");
            return;
        }
        if (Status.HasFlag(DeviceStatus.DeviceNeedsReset) || NeedsResetReason is not null) return;
        if (Deferred) { _pendingNotify.Add(index); return; }
        Host.ServiceQueue(index, kicked: true);
    }

    /// <summary>Runs deferred notifications and device-initiated work (wakes, posts, due timers); returns how many queues ran.</summary>
    public int RunPending()
    {
        int ran = 0;
        if (_pendingNotify.Count > 0)
        {
            var list = _pendingNotify.ToArray();
            _pendingNotify.Clear();
            foreach (var i in list)
                if (NeedsResetReason is null && LiveQueue(i) is not null) { Host.ServiceQueue(i, kicked: true); ran++; }
        }
        if (Interlocked.Exchange(ref _wakes, 0) != 0 || AnyTimer())
            for (int i = 0; i < _queues.Length; i++)
                if (Host.HasWork(i)) { Host.ServiceQueue(i, kicked: false); ran++; }
        return ran;
    }

    private bool AnyTimer()
    {
        for (int i = 0; i < _queues.Length; i++) if (Host.MillisecondsToDeadline(i) >= 0) return true;
        return false;
    }

    /// <summary>Reads and clears the interrupt status (pci ISR read).</summary>
    public uint ReadAndClearInterrupt()
    {
        uint v = InterruptStatus;
        InterruptStatus = 0;
        return v;
    }

    /// <summary>mmio InterruptACK.</summary>
    public void AckInterrupt(uint bits) => InterruptStatus &= ~bits;

    /// <summary>Config read with bounds.</summary>
    public void ReadConfig(int offset, Span<byte> dst) => Host.ReadConfig(offset, dst);

    /// <summary>Config write with bounds.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> src) => Host.WriteConfig(offset, src);

    /// <summary>Device-initiated config change (e.g. capacity resize): bump generation, interrupt.</summary>
    public void ConfigChanged() => Host.ConfigChanged();
}
