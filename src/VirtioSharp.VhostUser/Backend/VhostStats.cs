namespace VirtioSharp.VhostUser.Backend;

/// <summary>Counters for the stats line: requests and bytes come from the device, translation from the IOTLB.</summary>
public sealed class VhostStats
{
    public long Connections;
    public long Messages;
    public long ProtocolErrors;
    public long Kicks;
    public long Interrupts;
    public long IotlbHits;
    public long IotlbMisses;
    public long IotlbUpdates;
    public long IotlbInvalidations;
    public long Resubmitted;
    public long ConfigChanges;
}
