using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Host;

/// <summary>
/// What a transport does for <see cref="VirtioDeviceHost{TMem}"/>: build the queues the driver configured, signal the
/// driver, and run a queue's work on that queue's owner thread. The simulated mmio/pci register models and vhost-user
/// implement it; the status, feature and activation rules stay in the host.
/// </summary>
public interface IDeviceHostTransport<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>
    /// At DRIVER_OK: the queues the driver set up, by index (null where a queue is not enabled or, as with vhost-user,
    /// starts later through <see cref="VirtioDeviceHost{TMem}.StartQueue"/>). Null with a reason when a ring cannot be reached.
    /// </summary>
    DeviceQueue<TMem>?[]? CreateQueues(ulong features, out string? failure);
    /// <summary>Used-buffer notification for <paramref name="queue"/> (already filtered by the driver's suppression).</summary>
    void Interrupt(int queue);
    /// <summary>Configuration-change notification (config space changed, or DEVICE_NEEDS_RESET was set).</summary>
    void ConfigInterrupt();
    /// <summary>DEVICE_NEEDS_RESET was just set; <paramref name="queue"/> is the broken queue, or -1.</summary>
    void NeedsReset(string reason, int queue);
    /// <summary>Any thread: make <paramref name="queue"/>'s owner thread call <see cref="VirtioDeviceHost{TMem}.ServiceQueue"/> soon.</summary>
    void Wake(int queue);
    /// <summary>Whether the owner threads poll file descriptors (<see cref="Devices.DeviceContext{TMem}.AddEventSource"/>).</summary>
    bool PollsEventSources { get; }
}
