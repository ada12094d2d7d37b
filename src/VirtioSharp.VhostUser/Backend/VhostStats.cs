namespace VirtioSharp.VhostUser.Backend;

/// <summary>Counters for the stats line: requests and bytes come from the device, translation from the IOTLB.</summary>
public sealed class VhostStats
{
    /// <summary>Front-end connections accepted.</summary>
    public long Connections;
    /// <summary>Front-end connections that have ended (the device was reset after each).</summary>
    public long ConnectionsEnded;
    /// <summary>vhost-user messages handled.</summary>
    public long Messages;
    /// <summary>Connections dropped because the front-end broke the protocol.</summary>
    public long ProtocolErrors;
    /// <summary>
    /// Messages whose handler failed with an error other than a refusal (a bug: every message should be valid in
    /// every state or refused with a reason); the connection is closed like for a protocol error.
    /// </summary>
    public long HandlerFaults;
    /// <summary>Kick eventfd signals received (driver notifications).</summary>
    public long Kicks;
    /// <summary>Rounds whose work a ring worker found by busy-polling (--poll-us), not through a kick.</summary>
    public long Polled;
    /// <summary>Call eventfd signals sent (used-buffer interrupts).</summary>
    public long Interrupts;
    /// <summary>Used-buffer interrupts the driver's suppression state avoided (EVENT_IDX used_event, NO_INTERRUPT, packed event flags), summed over stopped rings.</summary>
    public long InterruptsSuppressed;
    /// <summary>IOTLB lookups that found a translation, summed over finished connections (VHOST_USER_PROTOCOL_F_IOMMU).</summary>
    public long IotlbHits;
    /// <summary>IOTLB lookups that found no translation, summed over finished connections.</summary>
    public long IotlbMisses;
    /// <summary>VHOST_IOTLB_UPDATE messages applied, summed over finished connections.</summary>
    public long IotlbUpdates;
    /// <summary>VHOST_IOTLB_INVALIDATE messages applied, summed over finished connections.</summary>
    public long IotlbInvalidations;
    /// <summary>In-flight requests resubmitted after a reconnect (vhost-user.rst: Inflight I/O tracking).</summary>
    public long Resubmitted;
    /// <summary>Config-change notifications sent to the front-end (VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the back-end channel).</summary>
    public long ConfigChanges;
    /// <summary>Pages marked dirty in the front-end's log while it migrated the guest (VHOST_F_LOG_ALL), summed over finished connections.</summary>
    public long DirtyPages;
    /// <summary>Pages written beyond the end of the front-end's dirty log (not marked: a log too small for guest memory), summed over finished connections.</summary>
    public long DirtyLogOutOfRange;
}
