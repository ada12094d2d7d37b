namespace VirtioSharp.Net.Switch;

/// <summary>
/// One switch port's counters. "Tx" is what its guest transmitted into the switch, "Rx" what the switch delivered to
/// its guest (the guest's point of view, as in <see cref="Devices.Net.NetDeviceStats"/>).
/// </summary>
/// <param name="TxPackets">Frames the guest sent that the switch took.</param>
/// <param name="TxBytes">Their bytes (Ethernet frame, no virtio-net header).</param>
/// <param name="TxDropped">Frames the guest sent that were dropped at once: shorter than an Ethernet header, longer than MTU + 18, or no buffer free.</param>
/// <param name="RxPackets">Frames delivered to the guest's receive buffers.</param>
/// <param name="RxBytes">Their bytes.</param>
/// <param name="RxDropped">Frames for this port dropped: its queue was full (the guest takes none), no guest was attached, or its buffers were too small.</param>
/// <param name="Floods">Frames from this port sent to every other port (broadcast, multicast, unknown destination).</param>
/// <param name="Filtered">Frames from this port whose destination was learned on this same port (never sent back where they came from).</param>
public readonly record struct NetSwitchPortStats(
    long TxPackets, long TxBytes, long TxDropped, long RxPackets, long RxBytes, long RxDropped, long Floods, long Filtered);
