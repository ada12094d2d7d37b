using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers;

/// <summary>
/// The driver's side of a transport (Linux virtio_config_ops): register-level access to one device, whatever carries
/// it. Implementations talk only through the transport's registers; nothing here trusts the device.
/// </summary>
public interface IVirtioTransport
{
    /// <summary>Which transport this is, for the DMA policy.</summary>
    TransportKind Kind { get; }
    /// <summary>Whether the device is driven through the legacy (pre-1.0) interface.</summary>
    bool IsLegacy { get; }
    /// <summary>The device type the transport reports.</summary>
    DeviceId DeviceId { get; }
    /// <summary>Reads the device status (§2.1).</summary>
    DeviceStatus GetStatus();
    /// <summary>Writes the device status (§2.1); writing 0 resets, see <see cref="Reset"/>.</summary>
    void SetStatus(DeviceStatus status);
    /// <summary>Writes 0 and waits until the device reads back 0 (§2.1.2 / §4.1.4.3.2).</summary>
    void Reset();
    /// <summary>Reads the device feature bits (legacy: only the low 32).</summary>
    ulong GetFeatures();
    /// <summary>Writes the driver feature bits (§3.1.1 step 5).</summary>
    void SetFeatures(ulong features);
    /// <summary>Largest size the device supports for the queue; 0 if the queue does not exist.</summary>
    ushort GetQueueMaxSize(int queue);
    /// <summary>Tells the device where the queue lives and enables it.</summary>
    void SetupQueue(int queue, DriverQueue ring);
    /// <summary>Disables the queue (legacy: PFN 0; modern: only reset can disable, so this is a no-op).</summary>
    void DeleteQueue(int queue);
    /// <summary>Tells the device the queue has new buffers (§2.7.13 / §2.8.22).</summary>
    void Notify(int queue);
    /// <summary>NOTIFICATION_DATA (§2.9): a notification carrying vqn | next_off &lt;&lt; 16 | next_wrap &lt;&lt; 31.</summary>
    void Notify(int queue, uint data) => Notify(queue);
    /// <summary>Reads and acknowledges the interrupt status: bit 0 used buffer, bit 1 config change.</summary>
    uint ReadAndAckInterrupt();
    /// <summary>Changes whenever the device changes its config space (§2.5.1); legacy transports have none and return 0.</summary>
    byte ConfigGeneration { get; }
    /// <summary>Reads device-specific config space at <paramref name="offset"/>.</summary>
    void ReadConfig(int offset, Span<byte> destination);
    /// <summary>Writes device-specific config space at <paramref name="offset"/>.</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> source);
    /// <summary>Legacy ring alignment (mmio v1: QueueAlign; pci legacy: 4096).</summary>
    ulong LegacyAlign { get; }
}
