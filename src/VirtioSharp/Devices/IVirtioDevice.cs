using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>
/// A device model: what a virtio device is, independent of the transport that carries it (simulated mmio/pci, later
/// vhost-user). It only ever reaches memory through its queues' <typeparamref name="TMem"/> view.
/// </summary>
public interface IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    DeviceId DeviceId { get; }
    /// <summary>Features offered to the driver (device-independent and device-specific bits).</summary>
    ulong DeviceFeatures { get; }
    int QueueCount { get; }
    ushort MaxQueueSize { get; }
    /// <summary>Bytes of device-specific configuration space.</summary>
    int ConfigSize { get; }
    /// <summary>Reads config bytes; the transport has already bounded offset and length to <see cref="ConfigSize"/>.</summary>
    void ReadConfig(int offset, Span<byte> destination);
    /// <summary>Writes config bytes (bounded by the transport); read-only fields ignore writes.</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> source);
    /// <summary>Called at FEATURES_OK: return false (with a reason) to refuse the driver's feature set.</summary>
    bool AcceptFeatures(ulong features, out string? reason);
    /// <summary>Called at DRIVER_OK with the live queues.</summary>
    void Activate(DeviceContext<TMem> context);
    /// <summary>The driver notified <paramref name="queue"/>: process what is available.</summary>
    void QueueNotify(int queue);
    /// <summary>Forget everything negotiated and in flight (status 0 written).</summary>
    void Reset();
}

/// <summary>What an activated device gets from its transport.</summary>
public sealed class DeviceContext<TMem>(ulong features, DeviceQueue<TMem>?[] queues, Action<int> interrupt, Action<string> needsReset)
    where TMem : struct, IDeviceMemory
{
    public ulong Features { get; } = features;
    /// <summary>Queues by index; null where the driver did not enable one.</summary>
    public DeviceQueue<TMem>?[] Queues { get; } = queues;
    public bool Has(int bit) => VirtioFeature.Has(Features, bit);

    /// <summary>Signals used buffers on <paramref name="queue"/> if the driver wants an interrupt.</summary>
    public void InterruptIfNeeded(int queue)
    {
        var q = Queues[queue];
        if (q is not null && q.NeedsInterrupt()) interrupt(queue);
    }

    /// <summary>The device cannot go on (a queue is broken): the transport sets DEVICE_NEEDS_RESET (§2.1.2).</summary>
    public void NeedsReset(string reason) => needsReset(reason);
}
