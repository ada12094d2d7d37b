namespace VirtioSharp.VhostUser.Diagnostics;

/// <summary>
/// A <see cref="Backend.VhostUserServer"/>'s counters at one moment: the totals of finished connections plus the live
/// ones of the current connection (IOTLB, kicks and polled rounds of running rings).
/// </summary>
/// <param name="Connections">Front-end connections accepted.</param>
/// <param name="ConnectionsEnded">Connections that have ended.</param>
/// <param name="Messages">vhost-user messages handled.</param>
/// <param name="ProtocolErrors">Connections dropped because the front-end broke the protocol.</param>
/// <param name="HandlerFaults">Messages whose handler failed unexpectedly.</param>
/// <param name="Kicks">Kick eventfd signals received.</param>
/// <param name="Polled">Rounds found by busy-polling instead of a kick.</param>
/// <param name="Interrupts">Call eventfd signals sent.</param>
/// <param name="IotlbHits">IOTLB lookups that found a translation.</param>
/// <param name="IotlbMisses">IOTLB lookups that had to ask the front-end.</param>
/// <param name="IotlbUpdates">VHOST_IOTLB_UPDATE messages applied.</param>
/// <param name="IotlbInvalidations">VHOST_IOTLB_INVALIDATE messages applied.</param>
/// <param name="Resubmitted">In-flight requests resubmitted after a reconnect.</param>
/// <param name="ConfigChanges">Config-change notifications sent.</param>
/// <param name="DirtyPages">Pages marked dirty in a live migration's log (bits turned from 0 to 1).</param>
/// <param name="DirtyLogOutOfRange">Pages written beyond the end of the dirty log (not marked).</param>
/// <param name="InterruptsSuppressed">Used-buffer interrupts not sent because the driver's suppression state (EVENT_IDX
/// used_event, VIRTQ_AVAIL_F_NO_INTERRUPT, packed event flags) said so.</param>
public readonly record struct VhostCounters(
    long Connections, long ConnectionsEnded, long Messages, long ProtocolErrors, long HandlerFaults,
    long Kicks, long Polled, long Interrupts,
    long IotlbHits, long IotlbMisses, long IotlbUpdates, long IotlbInvalidations,
    long Resubmitted, long ConfigChanges, long DirtyPages, long DirtyLogOutOfRange, long InterruptsSuppressed)
{
    /// <summary>Connections after the first (a front-end reconnecting, or a new one).</summary>
    public long Reconnects => Math.Max(0, Connections - 1);

    /// <summary>Reads <paramref name="server"/>'s counters now (any thread; each counter is read atomically).</summary>
    public static VhostCounters Read(Backend.VhostUserServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        var s = server.Stats;
        var current = server.Current;
        var (hits, misses, updates, inv) = current?.IotlbCounters ?? default;
        var (kicks, polled, suppressed) = current?.RingCounters ?? default;
        var (dirty, beyond) = current?.DirtyLogCounters ?? default;
        return new VhostCounters(
            Interlocked.Read(ref s.Connections), Interlocked.Read(ref s.ConnectionsEnded), Interlocked.Read(ref s.Messages),
            Interlocked.Read(ref s.ProtocolErrors), Interlocked.Read(ref s.HandlerFaults),
            Interlocked.Read(ref s.Kicks) + kicks, Interlocked.Read(ref s.Polled) + polled, Interlocked.Read(ref s.Interrupts),
            Interlocked.Read(ref s.IotlbHits) + hits, Interlocked.Read(ref s.IotlbMisses) + misses,
            Interlocked.Read(ref s.IotlbUpdates) + updates, Interlocked.Read(ref s.IotlbInvalidations) + inv,
            Interlocked.Read(ref s.Resubmitted), Interlocked.Read(ref s.ConfigChanges),
            Interlocked.Read(ref s.DirtyPages) + dirty, Interlocked.Read(ref s.DirtyLogOutOfRange) + beyond,
            Interlocked.Read(ref s.InterruptsSuppressed) + suppressed);
    }
}
