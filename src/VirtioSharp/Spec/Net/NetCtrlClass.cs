namespace VirtioSharp.Spec.Net;

/// <summary>Control virtqueue command classes (virtio 1.2 §5.1.6.5).</summary>
public static class NetCtrlClass
{
    /// <summary>VIRTIO_NET_CTRL_RX: packet receive filtering modes (<see cref="NetCtrlRx"/>).</summary>
    public const byte Rx = 0;
    /// <summary>VIRTIO_NET_CTRL_MAC: MAC filter table and address (<see cref="NetCtrlMac"/>).</summary>
    public const byte Mac = 1;
    /// <summary>VIRTIO_NET_CTRL_VLAN.</summary>
    public const byte Vlan = 2;
    /// <summary>VIRTIO_NET_CTRL_ANNOUNCE.</summary>
    public const byte Announce = 3;
    /// <summary>VIRTIO_NET_CTRL_MQ: queue pairs in use (<see cref="NetCtrlMq"/>).</summary>
    public const byte Mq = 4;
    /// <summary>VIRTIO_NET_CTRL_GUEST_OFFLOADS.</summary>
    public const byte GuestOffloads = 5;
}
