using System.Buffers.Binary;
using VirtioSharp.Devices.Net;
using VirtioSharp.Interop;
using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.Net.Switch;
using VirtioSharp.Tests.Support;
using VirtioSharp.Testing;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// VHOST_USER_SEND_RARP (vhost-user.rst): once a migration is done QEMU asks a net back-end that offers
/// VHOST_USER_PROTOCOL_F_RARP to broadcast a RARP from the guest's MAC, so that switches learn the guest's new port.
/// The net back-end offers it and sends exactly that frame through its port; a malformed request ends the connection.
/// </summary>
public class VhostSendRarpTests
{
    private const ulong RarpBit = 1UL << VhostProtocolFeature.Rarp;
    private static readonly byte[] GuestMac = [0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF];

    private static byte[] MacPayload(ReadOnlySpan<byte> mac, int size = 8)
    {
        var b = new byte[size];
        mac[..Math.Min(6, size)].CopyTo(b);
        return b;
    }

    private static (MemoryNetPort Port, NetDevice<RMem> Device, VhostDeviceRig Rig) NetRig()
    {
        var port = new MemoryNetPort();
        var dev = new NetDevice<RMem>([port], new NetDeviceOptions { ControlQueue = false });
        return (port, dev, new VhostDeviceRig(dev));
    }

    private static int FdsNaming(string name) =>
        Directory.GetFiles("/proc/self/fd").Count(f => { try { return new FileInfo(f).LinkTarget?.Contains($"/memfd:{name} ") == true; } catch (IOException) { return false; } });

    /// <summary>QEMU migrates a vhost-user net device only with VHOST_F_LOG_ALL (and LOG_SHMFD for the shared log).</summary>
    [Fact]
    public void TheNetBackEndOffersLogAllAndRarpAndTheBlockBackEndNoRarp()
    {
        const ulong logAll = 1UL << 26, logShmfd = 1UL << VhostProtocolFeature.LogShmfd;
        var (_, _, rig) = NetRig();
        using (rig)
        using (var c = new RawClient(rig.SocketPath))
        {
            Assert.Equal(logAll, c.AskU64(VhostRequest.GetFeatures) & logAll);
            Assert.Equal(RarpBit | logShmfd, c.AskU64(VhostRequest.GetProtocolFeatures) & (RarpBit | logShmfd));
        }
        using var blk = new VhostRig();
        using var b = blk.Connect();
        Assert.Equal(0UL, b.AskU64(VhostRequest.GetProtocolFeatures) & RarpBit);
    }

    /// <summary>No ring needs to run: QEMU sends SEND_RARP when the destination resumes, possibly before it starts them.</summary>
    [Fact]
    public void SendRarpBroadcastsOneRarpRequestFromTheGuestMacThroughThePort()
    {
        var (port, dev, rig) = NetRig();
        using var r = rig;
        using var c = new RawClient(rig.SocketPath);
        c.Send(VhostRequest.SetProtocolFeatures, RarpBit);
        c.Send(VhostRequest.SendRarp, MacPayload(GuestMac));
        c.AskU64(VhostRequest.GetFeatures);               // both handled
        var (header, f) = Assert.Single(port.Sent);
        Assert.Equal(default, header);                    // no offload asked for
        Assert.Equal(60, f.Length);                       // the Ethernet minimum
        Assert.Equal(Enumerable.Repeat((byte)0xFF, 6), f[..6]);
        Assert.Equal(GuestMac, f[6..12]);                 // source: the switch learns the guest here
        Assert.Equal(0x8035, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12)));    // RARP
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(14)));         // Ethernet
        Assert.Equal(0x0800, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(16)));    // IPv4
        Assert.Equal([6, 4], f[18..20]);
        Assert.Equal(3, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(20)));         // reverse request
        Assert.Equal(GuestMac, f[22..28]);                // sender hardware address
        Assert.Equal(GuestMac, f[32..38]);                // target hardware address
        Assert.All(f[28..32].Concat(f[38..]), b => Assert.Equal(0, b));              // protocol addresses, padding
        Assert.Equal(1, dev.Stats.RarpSent);
        Assert.Contains(rig.Log.Lines, l => l.Contains("SEND_RARP") && l.Contains("52:54:00:ab:cd:ef"));
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("closing the connection"));
    }

    [Fact]
    public void WithTheLinkDownNothingIsSentAndTheConnectionGoesOn()
    {
        var (port, dev, rig) = NetRig();
        using var r = rig;
        dev.SetLink(false);
        using var c = new RawClient(rig.SocketPath);
        c.Send(VhostRequest.SetProtocolFeatures, RarpBit);
        c.Send(VhostRequest.SendRarp, MacPayload(GuestMac));
        Assert.NotEqual(0UL, c.AskU64(VhostRequest.GetFeatures));
        Assert.Empty(port.Sent);
        Assert.Equal((0L, 1L), (dev.Stats.RarpSent, dev.Stats.RarpDropped));
        Assert.Contains(rig.Log.Lines, l => l.Contains("SEND_RARP") && l.Contains("not sent"));
    }

    public static TheoryData<string, string> BadRequests => new()
    {
        { "payload of 6 bytes", "payload of 6 bytes, expected 8" },
        { "payload of 16 bytes", "payload of 16 bytes, expected 8" },
        { "empty payload", "payload of 0 bytes, expected 8" },
        { "RARP not negotiated", "VHOST_USER_PROTOCOL_F_RARP was not negotiated" },
        { "multicast MAC", "is not a unicast MAC address" },
        { "zero MAC", "is not a unicast MAC address" },
        { "with an fd", "expected 0 file descriptor(s), got 1" },
    };

    /// <summary>A malformed SEND_RARP ends the connection with a line naming what was wrong; nothing is sent; an fd that came with it is closed.</summary>
    [Theory]
    [MemberData(nameof(BadRequests))]
    public void AMalformedSendRarpIsRefused(string what, string message)
    {
        var (port, dev, rig) = NetRig();
        using var r = rig;
        using var c = new RawClient(rig.SocketPath);
        string name = $"rarp-{Guid.NewGuid():N}"[..16];
        using var fd = MemFd.Create(name, 4096);
        c.Send(VhostRequest.SetProtocolFeatures, what == "RARP not negotiated" ? 0 : RarpBit);
        byte[] multicast = [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01];
        var payload = what switch
        {
            "payload of 6 bytes" => MacPayload(GuestMac, 6),
            "payload of 16 bytes" => MacPayload(GuestMac, 16),
            "empty payload" => [],
            "multicast MAC" => MacPayload(multicast),
            "zero MAC" => new byte[8],
            _ => MacPayload(GuestMac),
        };
        c.Send(VhostRequest.SendRarp, payload, what == "with an fd" ? [fd] : []);
        Assert.True(c.IsClosedByPeer(), $"{what}: the back-end should have closed the connection");
        Assert.True(WaitClosed(rig));
        var line = rig.Log.Lines.FirstOrDefault(l => l.Contains("closing the connection"));
        Assert.NotNull(line);
        Assert.Contains("SendRarp", line);
        Assert.Contains(message, line);
        Assert.Empty(port.Sent);
        Assert.Equal(0, dev.Stats.RarpSent);
        Assert.Equal(0, rig.Server.Stats.HandlerFaults);
        Assert.Equal(1, FdsNaming(name));                 // only this test's own
    }

    /// <summary>
    /// On the built-in switch the RARP moves the guest's MAC to the destination's port: frames for the guest that went to
    /// the source's port go to the new one.
    /// </summary>
    [Fact]
    public unsafe void OnTheBuiltInSwitchTheRarpMovesTheGuestToTheNewPort()
    {
        var sw = new NetSwitch(3);
        foreach (var port in sw.Ports) port.SetReceiveWakeup(static () => { });   // guests attached: frames wait for them
        byte[] peer = [0x52, 0x54, 0, 0, 0, 0x99];
        bool Send(int port, byte[] dst, byte[] src)
        {
            var f = new byte[60];
            dst.CopyTo(f, 0);
            src.CopyTo(f, 6);
            fixed (byte* p = f) return sw.Ports[port].Transmit(default, [new IoVec((nint)p, 60)]);
        }
        Assert.True(Send(0, peer, GuestMac));             // the guest on the source's port talks: learned there
        Assert.Equal(0, sw.PortOf(GuestMac));
        var destination = new NetDevice<RMem>([sw.Ports[1]], new NetDeviceOptions { ControlQueue = false });
        Assert.True(destination.BroadcastRarp(GuestMac));
        Assert.Equal(1, sw.PortOf(GuestMac));
        // The first frame (to a peer not yet learned) was flooded to 1 and 2; the RARP is flooded to 0 and 2.
        Assert.Equal((1, 1, 2), (sw.Ports[0].Waiting, sw.Ports[1].Waiting, sw.Ports[2].Waiting));
        Assert.True(Send(2, GuestMac, peer));             // the peer's next frame for the guest
        Assert.Equal((1, 2), (sw.Ports[0].Waiting, sw.Ports[1].Waiting));
    }

    private static bool WaitClosed(VhostDeviceRig rig)
    {
        var end = Environment.TickCount64 + 5000;
        while (Interlocked.Read(ref rig.Server.Stats.ConnectionsEnded) < 1 && Environment.TickCount64 < end) Thread.Sleep(10);
        return Interlocked.Read(ref rig.Server.Stats.ConnectionsEnded) >= 1;
    }
}
