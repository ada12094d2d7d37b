namespace VirtioSharp.Devices.Net;

/// <summary>
/// A device that can tell its network where a guest now is: after a live migration the switches in between still send
/// the guest's frames to the old host until a frame from the guest's MAC reaches them from the new one. A transport
/// asks for it when the front-end says the migration is done and the guest cannot announce itself (vhost-user.rst:
/// VHOST_USER_SEND_RARP, offered with VHOST_USER_PROTOCOL_F_RARP; a guest with VIRTIO_NET_F_GUEST_ANNOUNCE sends its own
/// gratuitous ARP instead).
/// </summary>
public interface IRarpAnnouncer
{
    /// <summary>
    /// Broadcasts one RARP request (RFC 903, Ethernet broadcast, source <paramref name="mac"/>) through the device's
    /// network port, as if the guest had sent it. Any thread; never blocks. False when it was not sent (link down, or the
    /// port dropped it).
    /// </summary>
    /// <param name="mac">The guest's unicast MAC address, 6 bytes.</param>
    bool BroadcastRarp(ReadOnlySpan<byte> mac);
}
