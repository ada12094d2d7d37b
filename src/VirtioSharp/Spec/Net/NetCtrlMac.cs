namespace VirtioSharp.Spec.Net;

/// <summary>VIRTIO_NET_CTRL_MAC commands (virtio 1.2 §5.1.6.5.2).</summary>
public static class NetCtrlMac
{
    /// <summary>
    /// VIRTIO_NET_CTRL_MAC_TABLE_SET: two <c>struct virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; }</c>,
    /// unicast then multicast addresses the driver wants to receive.
    /// </summary>
    public const byte TableSet = 0;
    /// <summary>VIRTIO_NET_CTRL_MAC_ADDR_SET: the device's MAC address (6 bytes; NET_CTRL_MAC_ADDR).</summary>
    public const byte AddrSet = 1;
}
