using System.Buffers.Binary;
using System.Net.Sockets;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests.Support;

/// <summary>A front-end that can say anything, well-formed or not.</summary>
public sealed class RawClient : IDisposable
{
    private readonly Socket _socket;
    private readonly FdSocket _fdSocket;

    public RawClient(string path, int timeoutMs = 5000) : this(ConnectTo(path), timeoutMs) { }

    /// <summary>Speaks on an already connected socket (e.g. the test's end of a socket pair); owns it.</summary>
    public RawClient(Socket connected, int timeoutMs = 5000)
    {
        _socket = connected;
        _socket.ReceiveTimeout = timeoutMs;
        _fdSocket = new FdSocket(_socket);
    }

    private static Socket ConnectTo(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { s.Connect(new UnixDomainSocketEndPoint(path)); }
        catch { s.Dispose(); throw; }
        return s;
    }

    /// <summary>True if the back-end sent something (or closed) within <paramref name="timeout"/>.</summary>
    public bool AnswersWithin(TimeSpan timeout) => _socket.Poll(timeout, SelectMode.SelectRead);

    internal void SendRaw(ReadOnlySpan<byte> bytes, ReadOnlySpan<SafeFd> fds = default) => _fdSocket.Send(bytes, fds);

    internal void Send(VhostRequest req, ReadOnlySpan<byte> payload, ReadOnlySpan<SafeFd> fds = default, uint flags = VhostHeader.Version, uint? size = null)
    {
        var m = new byte[VhostHeader.Length + payload.Length];
        new VhostHeader((uint)req, flags, size ?? (uint)payload.Length).Write(m);
        payload.CopyTo(m.AsSpan(VhostHeader.Length));
        _fdSocket.Send(m, fds);
    }

    /// <summary>sendmsg with any number of fds (FdSocket caps them at what a front-end may send).</summary>
    internal unsafe void SendWithAnyFds(ReadOnlySpan<byte> bytes, SafeFd[] fds)
    {
        int hdr = (sizeof(LibC.CMsgHdr) + 7) & ~7;
        int space = hdr + ((fds.Length * sizeof(int) + 7) & ~7);
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        var h = (LibC.CMsgHdr*)control;
        h->Len = (nuint)(hdr + fds.Length * sizeof(int));
        h->Level = LibC.SOL_SOCKET;
        h->Type = LibC.SCM_RIGHTS;
        for (int i = 0; i < fds.Length; i++) ((int*)(control + hdr))[i] = fds[i].Fd;
        fixed (byte* b = bytes)
        {
            var iov = new LibC.IoVec { Base = b, Len = (nuint)bytes.Length };
            var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = (nuint)space };
            if (LibC.SendMsg((int)_socket.Handle, &msg, LibC.MSG_NOSIGNAL) != bytes.Length) throw new IOException($"sendmsg: {LibC.Describe(LibC.Errno)}");
        }
    }

    internal void Send(VhostRequest req, ulong value) => Send(req, U64(value));

    public static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b;
    }

    public static byte[] State(uint index, uint num)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(b, index);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), num);
        return b;
    }

    /// <summary>Reads one reply; null if the back-end closed the connection.</summary>
    internal (VhostHeader Header, byte[] Body)? Receive(List<SafeFd>? fds = null)
    {
        var hb = new byte[VhostHeader.Length];
        try
        {
            if (!_fdSocket.ReceiveExact(hb, fds)) return null;
        }
        catch (IOException) { return null; }
        var h = VhostHeader.Parse(hb);
        var body = new byte[h.Size];
        if (h.Size > 0 && !_fdSocket.ReceiveExact(body, null)) return null;
        return (h, body);
    }

    internal ulong AskU64(VhostRequest req)
    {
        Send(req, ReadOnlySpan<byte>.Empty);
        var r = Receive() ?? throw new IOException($"no reply to {req}");
        return BinaryPrimitives.ReadUInt64LittleEndian(r.Body);
    }

    /// <summary>True once the back-end has closed its end (a read returns EOF).</summary>
    public bool IsClosedByPeer() => Receive() is null;

    public void ShutdownWrite() => _socket.Shutdown(SocketShutdown.Send);

    public void Dispose() => _fdSocket.Dispose();
}
