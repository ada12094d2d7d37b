namespace VirtioSharp.Spec.Net;

/// <summary>virtio-net feature bits (virtio 1.2 §5.1.3).</summary>
public static class NetFeature
{
    /// <summary>The device handles packets with a partial checksum (the driver may send NEEDS_CSUM).</summary>
    public const int Csum = 0;
    /// <summary>The driver handles packets with a partial checksum (the device may deliver NEEDS_CSUM).</summary>
    public const int GuestCsum = 1;
    /// <summary>Control channel offloads reconfiguration.</summary>
    public const int CtrlGuestOffloads = 2;
    /// <summary>The device reports its maximum MTU in config.</summary>
    public const int Mtu = 3;
    /// <summary>The device has a MAC address in config.</summary>
    public const int Mac = 5;
    /// <summary>The driver can receive TSOv4.</summary>
    public const int GuestTso4 = 7;
    /// <summary>The driver can receive TSOv6.</summary>
    public const int GuestTso6 = 8;
    /// <summary>The driver can receive TSO with ECN.</summary>
    public const int GuestEcn = 9;
    /// <summary>The driver can receive UFO.</summary>
    public const int GuestUfo = 10;
    /// <summary>The device can receive TSOv4 (the driver may send it).</summary>
    public const int HostTso4 = 11;
    /// <summary>The device can receive TSOv6.</summary>
    public const int HostTso6 = 12;
    /// <summary>The device can receive TSO with ECN.</summary>
    public const int HostEcn = 13;
    /// <summary>The device can receive UFO.</summary>
    public const int HostUfo = 14;
    /// <summary>The driver can merge receive buffers (num_buffers, §5.1.6.3.2).</summary>
    public const int MrgRxbuf = 15;
    /// <summary>Configuration status field (link) is available.</summary>
    public const int Status = 16;
    /// <summary>Control channel is available.</summary>
    public const int CtrlVq = 17;
    /// <summary>Control channel RX mode support.</summary>
    public const int CtrlRx = 18;
    /// <summary>Control channel VLAN filtering.</summary>
    public const int CtrlVlan = 19;
    /// <summary>Extra RX mode control support.</summary>
    public const int CtrlRxExtra = 20;
    /// <summary>The driver can send gratuitous packets.</summary>
    public const int GuestAnnounce = 21;
    /// <summary>Multiqueue with automatic receive steering (§5.1.6.5.5).</summary>
    public const int Mq = 22;
    /// <summary>Set the MAC address through the control channel.</summary>
    public const int CtrlMacAddr = 23;

    /// <summary>The spec name of a virtio-net bit, or null.</summary>
    public static string? Name(int bit) => bit switch
    {
        Csum => "NET_CSUM",
        GuestCsum => "NET_GUEST_CSUM",
        CtrlGuestOffloads => "NET_CTRL_GUEST_OFFLOADS",
        Mtu => "NET_MTU",
        Mac => "NET_MAC",
        GuestTso4 => "NET_GUEST_TSO4",
        GuestTso6 => "NET_GUEST_TSO6",
        GuestEcn => "NET_GUEST_ECN",
        GuestUfo => "NET_GUEST_UFO",
        HostTso4 => "NET_HOST_TSO4",
        HostTso6 => "NET_HOST_TSO6",
        HostEcn => "NET_HOST_ECN",
        HostUfo => "NET_HOST_UFO",
        MrgRxbuf => "NET_MRG_RXBUF",
        Status => "NET_STATUS",
        CtrlVq => "NET_CTRL_VQ",
        CtrlRx => "NET_CTRL_RX",
        CtrlVlan => "NET_CTRL_VLAN",
        CtrlRxExtra => "NET_CTRL_RX_EXTRA",
        GuestAnnounce => "NET_GUEST_ANNOUNCE",
        Mq => "NET_MQ",
        CtrlMacAddr => "NET_CTRL_MAC_ADDR",
        _ => null,
    };
}
