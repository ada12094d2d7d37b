using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers;

/// <summary>
/// A probed virtio device on the driver side: the generic probe path for every device type and transport (virtio 1.2
/// §3.1.1, Linux virtio.c), the DMA ops the policy chose, the queues, interrupt handling and removal.
/// </summary>
public sealed class VirtioDriverDevice : IDisposable
{
    internal const int MaxConfigRetries = 64;
    private readonly DriverQueue?[] _queues;
    private readonly DriverEnvironment _env;
    private bool _removed;

    private VirtioDriverDevice(IVirtioTransport transport, DriverEnvironment env, DmaDecision decision, IDmaOps ops, DriverQueue?[] queues)
    {
        Transport = transport;
        _env = env;
        Decision = decision;
        Dma = ops;
        _queues = queues;
    }

    /// <summary>The transport the device was probed on.</summary>
    public IVirtioTransport Transport { get; }
    /// <summary>What the DMA policy decided for this device.</summary>
    public DmaDecision Decision { get; }
    /// <summary>The DMA ops every buffer of the device's queues is mapped with.</summary>
    public IDmaOps Dma { get; }
    /// <summary>The negotiated features.</summary>
    public ulong Features => Decision.Features;
    /// <summary>The device type.</summary>
    public DeviceId DeviceId => Transport.DeviceId;
    /// <summary>The queues by index; null for queues that were not set up.</summary>
    public IReadOnlyList<DriverQueue?> Queues => _queues;
    /// <summary>The device set DEVICE_NEEDS_RESET (§2.1.2): it must be reset before it works again.</summary>
    public bool NeedsReset { get; private set; }
    /// <summary>Set when a config-change interrupt arrives; whoever re-reads the config may clear it.</summary>
    public bool ConfigChanged { get; set; }
    /// <summary>Per-queue callback run when the device signals used buffers.</summary>
    public Action<int>? OnUsed { get; set; }

    /// <summary>Whether feature <paramref name="bit"/> was negotiated.</summary>
    public bool Has(int bit) => VirtioFeature.Has(Features, bit);

    /// <summary>
    /// Probes the device: reset, ACKNOWLEDGE, DRIVER, features through the DMA policy, FEATURES_OK and read-back
    /// (modern), queues with the chosen ops, DRIVER_OK. On failure the device is left FAILED and nothing leaks.
    /// </summary>
    /// <param name="t">The transport the device sits on.</param>
    /// <param name="env">The machine: DMA platform, facts for the policy, polling.</param>
    /// <param name="driverFeatures">Features the device-type driver supports; the policy adds the platform bits.</param>
    /// <param name="queueCount">Queues to set up (0..count-1).</param>
    /// <param name="maxQueueSize">Upper bound on each queue's size (split queues round down to a power of two).</param>
    /// <param name="queuesFromConfig">Optional: decides the queue count from config after FEATURES_OK (virtio-blk MQ).</param>
    public static VirtioDriverDevice Probe(IVirtioTransport t, DriverEnvironment env, ulong driverFeatures, int queueCount, ushort maxQueueSize = 256,
        Func<IVirtioTransport, ulong, int>? queuesFromConfig = null)
    {
        void Trace(string s) => env.Trace?.Invoke(s);
        t.Reset();
        t.SetStatus(DeviceStatus.Acknowledge);
        t.SetStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        ulong offered = t.GetFeatures();
        Trace($"device {t.DeviceId} on {t.Kind} offers {VirtioFeature.Describe(offered, t.DeviceId)}");
        var decision = DmaPolicy.Decide(env.Facts, t.Kind, offered, driverFeatures, env.Mode);
        foreach (var r in decision.Reasons) Trace("policy: " + r);
        Trace("decision: " + decision.Summary);
        var status = DeviceStatus.Acknowledge | DeviceStatus.Driver;
        if (decision.Refused)
        {
            t.SetStatus(status | DeviceStatus.Failed);
            throw new VirtioProbeException($"{t.DeviceId} device refused by the DMA policy: {decision.Reasons[^1]}");
        }
        t.SetFeatures(decision.Features);
        Trace($"driver accepts {VirtioFeature.Describe(decision.Features, t.DeviceId)}");
        if (!t.IsLegacy)
        {
            status |= DeviceStatus.FeaturesOk;
            t.SetStatus(status);
            if (!t.GetStatus().HasFlag(DeviceStatus.FeaturesOk))
            {
                t.SetStatus(status | DeviceStatus.Failed);
                throw new VirtioProbeException($"{t.DeviceId} device cleared FEATURES_OK: it does not accept {VirtioFeature.Describe(decision.Features, t.DeviceId)} (§3.1.1 step 6)");
            }
        }

        if (queuesFromConfig is not null) queueCount = queuesFromConfig(t, decision.Features);
        var ops = DmaOpsFactory.Create(decision, env.Platform, env.IommuDomain, env.BouncePool);
        Trace($"DMA ops: {ops.Name}");
        var queues = new DriverQueue?[queueCount];
        try
        {
            var options = QueueOptions.FromFeatures(decision.Features, decision.Barriers) with { LegacyAlign = t.IsLegacy ? t.LegacyAlign : 0, Ordering = env.Ordering };
            for (int i = 0; i < queueCount; i++)
            {
                ushort max = t.GetQueueMaxSize(i);
                if (max == 0) throw new VirtioProbeException($"{t.DeviceId} device has no queue {i}");
                // Packed rings take any size up to the maximum (§2.8.10.1); split rings need a power of two (§2.7).
                ushort size = t.Kind == TransportKind.PciLegacy ? max
                    : options.Packed ? (ushort)Math.Min(max, maxQueueSize) : FloorPow2(Math.Min(max, maxQueueSize));
                if (!SplitRingLayout.IsValidSize(size, options.Packed))
                    throw new VirtioProbeException($"{t.DeviceId} device reports queue {i} maximum size {max}, which no {(options.Packed ? "packed" : "split")} ring can use");
                queues[i] = new DriverQueue(ops, env.Platform.Ram, size, options);
                t.SetupQueue(i, queues[i]!);
                Trace($"queue {i}: size {size}, desc 0x{queues[i]!.DeviceLayout.Desc:x} avail 0x{queues[i]!.DeviceLayout.Avail:x} used 0x{queues[i]!.DeviceLayout.Used:x}");
            }
            t.SetStatus(status | DeviceStatus.DriverOk);
            if (t.GetStatus().HasFlag(DeviceStatus.DeviceNeedsReset))
                throw new VirtioProbeException($"{t.DeviceId} device needs reset right after DRIVER_OK (it rejected the queue setup)");
        }
        catch
        {
            t.Reset();
            foreach (var q in queues) q?.Dispose();
            t.SetStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.Failed);
            throw;
        }
        return new VirtioDriverDevice(t, env, decision, ops, queues);
    }

    private static ushort FloorPow2(int v)
    {
        int p = 1;
        while (p * 2 <= v) p *= 2;
        return (ushort)p;
    }

    /// <summary>Queue <paramref name="index"/>; throws if it was not set up.</summary>
    public DriverQueue Queue(int index) =>
        _queues[index] ?? throw new InvalidOperationException($"queue {index} was not set up");

    /// <summary>Adds nothing; tells the device about new buffers if it wants to know.</summary>
    public void Kick(int queue)
    {
        var q = Queue(queue);
        if (!q.KickPrepare()) return;
        if (q.Options.NotificationData) Transport.Notify(queue, q.NotificationData(queue));
        else Transport.Notify(queue);
    }

    /// <summary>Reads and acknowledges the interrupt, notes config changes and DEVICE_NEEDS_RESET, runs OnUsed.</summary>
    public uint HandleInterrupt()
    {
        uint isr = Transport.ReadAndAckInterrupt();
        if ((isr & 2) != 0)
        {
            ConfigChanged = true;
            if (!Transport.IsLegacy && Transport.GetStatus().HasFlag(DeviceStatus.DeviceNeedsReset)) NeedsReset = true;
        }
        PollUsed();
        return isr;
    }

    /// <summary>
    /// Runs OnUsed for every queue with used buffers, without reading the interrupt status: a driver polling its rings
    /// (busy poll) while the device works.
    /// </summary>
    public void PollUsed()
    {
        for (int i = 0; i < _queues.Length; i++)
            if (_queues[i] is { } q && q.HasUsed) OnUsed?.Invoke(i);
    }

    /// <summary>Polls the machine once (device-initiated work runs there) and handles what it raised.</summary>
    public uint PollOnce()
    {
        _env.Poll();
        return HandleInterrupt();
    }

    /// <summary>
    /// Polls the machine and handles interrupts until <paramref name="done"/> holds. Returns false if the device made no
    /// progress for the environment's poll budget (a guest would hang here) or broke a queue.
    /// </summary>
    public bool WaitUntil(Func<bool> done)
    {
        int idle = 0;
        while (!done())
        {
            bool progressed = _env.Poll();
            uint isr = HandleInterrupt();
            if (NeedsReset || _queues.Any(q => q is { IsBroken: true })) return done();
            if (progressed || isr != 0) idle = 0;
            else if (++idle > _env.PollBudget) return false;
        }
        return true;
    }

    /// <summary>Reads device config consistently: retries until config generation is stable (§2.5.1).</summary>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        for (int i = 0; i < MaxConfigRetries; i++)
        {
            byte before = Transport.ConfigGeneration;
            Transport.ReadConfig(offset, destination);
            if (Transport.ConfigGeneration == before) return;
        }
        throw new VirtioProbeException($"{DeviceId} device config generation never settled after {MaxConfigRetries} reads: the device keeps changing its configuration");
    }

    /// <summary>
    /// Removes the device: reset (so it stops using memory), then every outstanding buffer is unmapped and its token
    /// returned, rings and indirect tables freed.
    /// </summary>
    public List<object> Remove()
    {
        if (_removed) return [];
        _removed = true;
        Transport.Reset();
        var tokens = new List<object>();
        foreach (var q in _queues)
        {
            if (q is null) continue;
            tokens.AddRange(q.DetachUnused());
            q.Dispose();
        }
        if (Dma is IommuDmaOps iommu) iommu.Flush();
        return tokens;
    }

    /// <summary>
    /// A device-type driver's own setup failed after the generic probe succeeded (e.g. its config never settled):
    /// remove the device so nothing leaks and leave it FAILED, as a failed generic probe does.
    /// </summary>
    internal void FailProbe()
    {
        Remove();
        Transport.SetStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.Failed);
    }

    /// <summary>Removes the device (see <see cref="Remove"/>).</summary>
    public void Dispose() => Remove();
}
