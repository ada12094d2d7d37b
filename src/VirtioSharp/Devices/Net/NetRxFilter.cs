namespace VirtioSharp.Devices.Net;

/// <summary>
/// The receive filter the driver programs through the control queue (virtio 1.2 §5.1.6.5.1–2). Immutable: a command
/// swaps in a new one, so receive threads read it without a lock.
/// </summary>
internal sealed class NetRxFilter
{
    /// <summary>Promiscuous until the driver says otherwise, as QEMU starts (drivers without CTRL_RX rely on it).</summary>
    public static NetRxFilter Initial(byte[] mac) => new(Key(mac), promisc: true, allMulti: false, [], []);

    public ulong Mac { get; }
    public bool Promisc { get; }
    public bool AllMulti { get; }
    public ulong[] Unicast { get; }
    public ulong[] Multicast { get; }

    public NetRxFilter With(bool? promisc = null, bool? allMulti = null, ulong[]? unicast = null, ulong[]? multicast = null, ulong? mac = null) =>
        new(mac ?? Mac, promisc ?? Promisc, allMulti ?? AllMulti, unicast ?? Unicast, multicast ?? Multicast);

    private NetRxFilter(ulong mac, bool promisc, bool allMulti, ulong[] unicast, ulong[] multicast)
    {
        Mac = mac; Promisc = promisc; AllMulti = allMulti; Unicast = unicast; Multicast = multicast;
    }

    /// <summary>A MAC address as a number (6 bytes, first byte lowest).</summary>
    public static ulong Key(ReadOnlySpan<byte> mac)
    {
        ulong k = 0;
        for (int i = 0; i < 6; i++) k |= (ulong)mac[i] << (8 * i);
        return k;
    }

    /// <summary>Whether a frame to <paramref name="destination"/> (its first 6 bytes) reaches the driver.</summary>
    public bool Accepts(ReadOnlySpan<byte> destination)
    {
        if (Promisc) return true;
        ulong k = Key(destination);
        if (k == 0xFFFF_FFFF_FFFFUL) return true;       // broadcast
        if ((destination[0] & 1) != 0) return AllMulti || Array.IndexOf(Multicast, k) >= 0;
        return k == Mac || Array.IndexOf(Unicast, k) >= 0;
    }
}
