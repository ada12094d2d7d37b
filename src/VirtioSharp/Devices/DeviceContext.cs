using System.Runtime.InteropServices;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>
/// What an activated device gets from its host: the negotiated features, the live queues, and the ways to reach the
/// driver (interrupts, config change, DEVICE_NEEDS_RESET) and its own queues' owner threads (wake, post, event
/// sources, timers). A context outlives nothing: after <see cref="IVirtioDevice{TMem}.Reset"/> its calls do nothing.
/// </summary>
public sealed class DeviceContext<TMem> where TMem : struct, IDeviceMemory
{
    private readonly VirtioDeviceHost<TMem> _host;

    internal DeviceContext(VirtioDeviceHost<TMem> host, ulong features, DeviceQueue<TMem>?[] queues)
    {
        _host = host;
        Features = features;
        Queues = queues;
    }

    /// <summary>The features the driver accepted.</summary>
    public ulong Features { get; }

    /// <summary>
    /// Queues by index; null where the driver did not enable one or its ring is not running. Slot <c>q</c> may only be
    /// read on q's owner thread (it changes only while that thread runs no device code).
    /// </summary>
    public DeviceQueue<TMem>?[] Queues { get; }

    /// <summary>True while this is the host's current activation (false after a reset).</summary>
    public bool IsActive => _host.IsCurrent(this);

    /// <summary>Whether <paramref name="bit"/> was negotiated.</summary>
    public bool Has(int bit) => VirtioFeature.Has(Features, bit);

    /// <summary>On the owner thread: signals used buffers on <paramref name="queue"/> if the driver wants an interrupt (§2.7.10).</summary>
    public void InterruptIfNeeded(int queue)
    {
        var q = Queues[queue];
        if (q is not null && q.NeedsInterrupt()) _host.Interrupt(this, queue);
    }

    /// <summary>Any thread: the device cannot go on; the host sets DEVICE_NEEDS_RESET (§2.1.2) and tells the driver.</summary>
    public void NeedsReset(string reason) => _host.SetNeedsReset(this, reason, -1);

    /// <summary>Any thread: the device changed its config space (e.g. capacity); the host bumps the generation and notifies the driver (§2.5.1).</summary>
    public void ConfigChanged() => _host.ConfigChanged(this);

    /// <summary>Any thread: have <see cref="IVirtioDevice{TMem}.QueueNotify"/> run on <paramref name="queue"/>'s owner thread soon. Wakes coalesce; no allocation.</summary>
    public void Wake(int queue) => _host.Wake(this, queue);

    /// <summary>Any thread: a one-shot timer; <see cref="IVirtioDevice{TMem}.QueueNotify"/> runs on the owner thread once <paramref name="delay"/> has passed (the earliest pending deadline wins).</summary>
    public void WakeAfter(int queue, TimeSpan delay) => _host.WakeAfter(this, queue, delay);

    /// <summary>Any thread: runs <paramref name="work"/> on <paramref name="queue"/>'s owner thread before its next notify. Allocates: not for per-request use.</summary>
    public void Post(int queue, Action work) => _host.Post(this, queue, work);

    /// <summary>
    /// Polls <paramref name="handle"/> (a file descriptor: TAP, socket, timerfd) on <paramref name="queue"/>'s owner
    /// thread and calls <paramref name="onReadable"/> there while it is readable. Disposing the result removes it; the
    /// host removes every source at reset. Hosts without an fd event loop refuse with <see cref="NotSupportedException"/>.
    /// </summary>
    public IDisposable AddEventSource(int queue, SafeHandle handle, Action onReadable) => _host.AddEventSource(this, queue, handle, onReadable);

    /// <summary>
    /// On the owner thread, before translating buffers with <see cref="IDeviceMemory.MapForIo"/> for an I/O that outlives
    /// this call: returns a token for <see cref="EndDirectIo"/>. A transport that changes translations waits for the
    /// I/O begun before the change (vhost-user: an IOTLB invalidation is confirmed only after it).
    /// </summary>
    public int BeginDirectIo(int queue) => _host.DirectIo.Enter(queue);

    /// <summary>The I/O begun with <paramref name="token"/> is complete: its host addresses are no longer used.</summary>
    public void EndDirectIo(int queue, int token) => _host.DirectIo.Exit(queue, token);
}
