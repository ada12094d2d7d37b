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
    /// <summary>How long each chain is held between pop and processing (more than zero).</summary>
    public required TimeSpan Delay { get; init; }

    /// <summary>Held chains on one queue at which <see cref="Held"/> is called, once until the queue drains below it again.</summary>
    public int ReportAt { get; init; } = 8;

    /// <summary>
    /// Called on the queue's owner thread with (queue, chains held) when a queue first holds <see cref="ReportAt"/>
    /// chains: a test's cue that the back-end now has that many requests in flight.
    /// </summary>
    public Action<int, int>? Held { get; init; }
}
