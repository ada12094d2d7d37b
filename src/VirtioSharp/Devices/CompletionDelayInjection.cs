namespace VirtioSharp.Devices;

/// <summary>
/// Fault injection for crash-recovery tests, never for service: <see cref="QueueService{TMem}"/> holds every chain it
/// pops for <see cref="Delay"/> before the device processes and completes it, so requests stay in flight (popped,
/// recorded in a vhost-user inflight region, not in the used ring) long enough for a test to kill the back-end under
/// them and check that the restarted one resubmits them (vhost-user.rst "Inflight I/O tracking"). Without an inflight
/// region a ring stop drops what is held, so a driver would wait for it forever. Off unless given; when off the loop
/// pays one null check per drain and nothing per chain.
/// </summary>
public sealed record CompletionDelayInjection
{
    /// <summary>
    /// How long each chain is held before processing (more than zero), counted from the end of the drain that popped
    /// it: a drain can be long (IOTLB misses), and its chains must still be held when it is reported.
    /// </summary>
    public required TimeSpan Delay { get; init; }

    /// <summary>
    /// Chains still held on one queue after a drain and its releases at which <see cref="Held"/> is called; once, until
    /// the count has fallen below it again.
    /// </summary>
    public int ReportAt { get; init; } = 8;

    /// <summary>
    /// Called on the queue's owner thread with (queue, chains held) when a queue first holds <see cref="ReportAt"/>
    /// chains: a test's cue that the back-end now has that many requests in flight, the newest for a full delay.
    /// </summary>
    public Action<int, int>? Held { get; init; }
}
