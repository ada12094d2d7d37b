namespace VirtioSharp.Devices.Net;

/// <summary>A snapshot of a <see cref="NetDevice{TMem}"/>'s counters, summed over its queues.</summary>
public sealed record NetDeviceStats
{
    /// <summary>Frames the driver sent that reached the port.</summary>
    public long TxPackets { get; init; }
    /// <summary>Their bytes (without the virtio-net header).</summary>
    public long TxBytes { get; init; }
    /// <summary>Transmit chains shorter than the virtio-net header (or than an Ethernet header after it): dropped.</summary>
    public long TxShort { get; init; }
    /// <summary>Frames over the MTU plus the link headers (or over 64 KiB with GSO): dropped.</summary>
    public long TxOversize { get; init; }
    /// <summary>Frames asking for a segmentation offload that was not negotiated: dropped.</summary>
    public long TxBadGso { get; init; }
    /// <summary>Frames asking for a checksum offload that was not negotiated, or with csum fields outside the frame: dropped.</summary>
    public long TxBadCsum { get; init; }
    /// <summary>Frames sent while the link was down: dropped.</summary>
    public long TxLinkDown { get; init; }
    /// <summary>Frames the port refused.</summary>
    public long TxPortDropped { get; init; }
    /// <summary>Frames whose buffers the device could no longer reach (a translation removed after the pop): dropped.</summary>
    public long TxFault { get; init; }
    /// <summary>Frames delivered to the driver.</summary>
    public long RxPackets { get; init; }
    /// <summary>Their bytes (without the virtio-net header).</summary>
    public long RxBytes { get; init; }
    /// <summary>Frames the port lost (too large for the buffers offered, or a port error).</summary>
    public long RxLost { get; init; }
    /// <summary>Frames the driver's receive filter (CTRL_RX, MAC table) refused.</summary>
    public long RxFiltered { get; init; }
    /// <summary>Frames whose port header used an offload the driver did not negotiate: dropped.</summary>
    public long RxBadHeader { get; init; }
    /// <summary>Receive buffers too small for the virtio-net header: returned empty.</summary>
    public long RxBadBuffers { get; init; }
    /// <summary>Times the receive queue had no buffers for waiting frames.</summary>
    public long RxNoBuffers { get; init; }
    /// <summary>Extra buffers used by frames spread over several (MRG_RXBUF).</summary>
    public long RxMergedBuffers { get; init; }
    /// <summary>Control commands answered VIRTIO_NET_OK.</summary>
    public long CtrlOk { get; init; }
    /// <summary>Control commands answered VIRTIO_NET_ERR (unknown, not negotiated, wrong size, bad value).</summary>
    public long CtrlErr { get; init; }
    /// <summary>Control chains without room for the class, command or ack: used without an answer.</summary>
    public long CtrlMalformed { get; init; }
    /// <summary>Frames copied through the device's own buffer because the address space hands out no host memory (the simulated bus); 0 over vhost-user.</summary>
    public long CopiedFrames { get; init; }
    /// <summary>RARP announcements broadcast for the guest (<see cref="IRarpAnnouncer"/>; vhost-user SEND_RARP after a migration).</summary>
    public long RarpSent { get; init; }
    /// <summary>RARP announcements not sent: the link was down or the port dropped them.</summary>
    public long RarpDropped { get; init; }
}
