using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>
/// A virtio device model, written once and run unchanged by every host (the simulated mmio/pci transports,
/// vhost-user). It reaches memory only through its queues' <typeparamref name="TMem"/> view and treats the driver as
/// hostile.
/// </summary>
/// <remarks>
/// <para><b>Threads.</b> Every queue has one <i>owner thread</i> at a time. <see cref="QueueNotify"/> for queue
/// <c>q</c> runs only on q's owner thread, never twice at once; different queues may run at the same time on different
/// threads (vhost-user: one worker thread per ring; the simulated machine: the thread that drives the bus for all of
/// them). A queue object (<c>context.Queues[q]</c>) and anything the device keeps per queue may be touched only from
/// that queue's owner thread. Work the driver did not kick — input from a host thread, a readable fd, a timer — is
/// handed to the owner thread through <see cref="DeviceContext{TMem}.Wake"/>, <see cref="DeviceContext{TMem}.Post"/>,
/// <see cref="DeviceContext{TMem}.AddEventSource"/> or <see cref="DeviceContext{TMem}.WakeAfter"/>, so device-initiated
/// I/O is safe by construction.</para>
/// <para><b>Order.</b> Control calls (<see cref="ReadConfig"/>, <see cref="WriteConfig"/>, <see cref="AcceptFeatures"/>,
/// <see cref="Activate"/>, <see cref="Reset"/>) come from the host's control thread, one at a time.
/// <see cref="AcceptFeatures"/> precedes <see cref="Activate"/>; <see cref="Activate"/> precedes every
/// <see cref="QueueNotify"/>; queues may appear in and leave <c>context.Queues</c> while the device is active (vhost-user
/// starts and stops rings one by one), but only while that queue's owner thread is not running device code.
/// <see cref="Reset"/> is called after every owner thread has stopped: nothing of the device runs concurrently with it,
/// and no queue is touched after it until the next <see cref="Activate"/>.</para>
/// </remarks>
public interface IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>The virtio device type (§5).</summary>
    DeviceId DeviceId { get; }
    /// <summary>Features offered to the driver (device-independent and device-specific bits).</summary>
    ulong DeviceFeatures { get; }
    /// <summary>Number of virtqueues the device has.</summary>
    int QueueCount { get; }
    /// <summary>Largest queue size the device accepts.</summary>
    ushort MaxQueueSize { get; }
    /// <summary>Bytes of device-specific configuration space.</summary>
    int ConfigSize { get; }
    /// <summary>What the device can do beyond the virtio basics; hosts offer transport features from it.</summary>
    DeviceCapabilities Capabilities => DeviceCapabilities.None;
    /// <summary>Reads config bytes; the host has already bounded offset and length to <see cref="ConfigSize"/>.</summary>
    void ReadConfig(int offset, Span<byte> destination);
    /// <summary>Writes config bytes (bounded by the host); read-only fields ignore writes.</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> source);
    /// <summary>Called at FEATURES_OK: return false (with a reason) to refuse the driver's feature set (§3.1.1).</summary>
    bool AcceptFeatures(ulong features, out string? reason);
    /// <summary>Called once per activation (DRIVER_OK) with the host's context; queues may still be starting.</summary>
    void Activate(DeviceContext<TMem> context);
    /// <summary>
    /// On the owner thread of <paramref name="queue"/>: the driver notified it, or the device asked to be woken. Process
    /// what there is: pop → process → add-used → interrupt (the built-in devices share <see cref="QueueService{TMem}"/> for it).
    /// </summary>
    void QueueNotify(int queue);
    /// <summary>
    /// On the owner thread of <paramref name="queue"/>, before it leaves <c>context.Queues</c> (vhost-user: the ring is
    /// stopped, the memory table changes, the connection ends): finish what is in flight there, e.g. wait for its
    /// storage I/O and use the chains. After it returns nothing of the device may touch memory the queue's chains point
    /// at. Devices that finish every chain inside <see cref="QueueNotify"/> need not implement it.
    /// </summary>
    void QueueStopping(int queue) { }
    /// <summary>Forget everything negotiated and in flight (status 0, or the connection ended).</summary>
    void Reset();
}
