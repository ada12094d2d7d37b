using System.Runtime.InteropServices;
using System.Net.Sockets;

namespace VirtioSharp.VhostUser.Interop;

/// <summary>
/// sendmsg/recvmsg with SCM_RIGHTS over a connected Unix stream socket. Received descriptors arrive with
/// MSG_CMSG_CLOEXEC, truncated control data is an error (every descriptor that did arrive is closed), and the number of
/// descriptors per message is capped.
/// </summary>
internal sealed unsafe class FdSocket : IDisposable
{
    public const int MaxFds = 8;   // VHOST_MEMORY_BASELINE_NREGIONS: the most any front-end message carries
    private readonly SafeHandle _handle;
    private readonly IDisposable? _owner;

    public FdSocket(Socket socket)
    {
        _handle = socket.SafeHandle;
        _owner = socket;
    }

    public FdSocket(SafeFd fd)
    {
        _handle = fd;
        _owner = fd;
    }

    private static int CmsgAlign(int n) => (n + 7) & ~7;
    private static int CmsgSpace(int dataLen) => CmsgAlign(sizeof(LibC.CMsgHdr)) + CmsgAlign(dataLen);

    /// <summary>
    /// Reads exactly <paramref name="buffer"/>.Length bytes; descriptors that came with them are appended to
    /// <paramref name="fds"/>. Returns false on orderly EOF before the first byte.
    /// </summary>
    public bool ReceiveExact(Span<byte> buffer, List<SafeFd>? fds)
    {
        int done = 0;
        byte* control = stackalloc byte[CmsgSpace(MaxFds * sizeof(int))];
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            int sock = (int)_handle.DangerousGetHandle();
            while (done < buffer.Length)
            {
                fixed (byte* b = buffer)
                {
                    var iov = new LibC.IoVec { Base = b + done, Len = (nuint)(buffer.Length - done) };
                    var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1 };
                    if (fds is not null && done == 0)
                    {
                        msg.Control = control;
                        msg.ControlLen = (nuint)CmsgSpace(MaxFds * sizeof(int));
                    }
                    nint n = LibC.RecvMsg(sock, &msg, LibC.MSG_CMSG_CLOEXEC);
                    if (n < 0)
                    {
                        int e = LibC.Errno;
                        if (e == LibC.EINTR) continue;
                        throw new IOException($"recvmsg failed: {LibC.Describe(e)}");
                    }
                    if (msg.Control != null) CollectFds(&msg, fds!);
                    if ((msg.Flags & LibC.MSG_CTRUNC) != 0)
                        throw new VhostProtocolException($"message carried more than {MaxFds} file descriptors (control data truncated)");
                    if (n == 0)
                    {
                        if (done == 0) return false;
                        throw new EndOfStreamException($"peer closed the socket after {done} of {buffer.Length} bytes");
                    }
                    done += (int)n;
                }
            }
            return true;
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    private static void CollectFds(LibC.MsgHdr* msg, List<SafeFd> fds)
    {
        byte* p = (byte*)msg->Control;
        byte* end = p + (long)msg->ControlLen;
        while (p + sizeof(LibC.CMsgHdr) <= end)
        {
            var h = (LibC.CMsgHdr*)p;
            if (h->Len < (nuint)sizeof(LibC.CMsgHdr) || p + (long)h->Len > end) break;
            if (h->Level == LibC.SOL_SOCKET && h->Type == LibC.SCM_RIGHTS)
            {
                int count = (int)(((long)h->Len - CmsgAlign(sizeof(LibC.CMsgHdr))) / sizeof(int));
                int* fdp = (int*)(p + CmsgAlign(sizeof(LibC.CMsgHdr)));
                // Own every descriptor at once, even past the cap, so each is closed exactly once.
                for (int i = 0; i < count; i++) fds.Add(new SafeFd(fdp[i]));
            }
            p += CmsgAlign((int)h->Len);
        }
    }

    /// <summary>Sends all of <paramref name="data"/>, with <paramref name="fds"/> attached to the first byte.</summary>
    public void Send(ReadOnlySpan<byte> data, ReadOnlySpan<SafeFd> fds = default)
    {
        if (fds.Length > MaxFds) throw new ArgumentException($"at most {MaxFds} descriptors per message");
        int done = 0;
        int space = CmsgSpace(fds.Length * sizeof(int));
        byte* control = stackalloc byte[Math.Max(space, 1)];
        bool added = false;
        var refs = new bool[fds.Length];
        try
        {
            _handle.DangerousAddRef(ref added);
            for (int i = 0; i < fds.Length; i++) fds[i].DangerousAddRef(ref refs[i]);
            int sock = (int)_handle.DangerousGetHandle();
            while (done < data.Length)
            {
                fixed (byte* b = data)
                {
                    var iov = new LibC.IoVec { Base = b + done, Len = (nuint)(data.Length - done) };
                    var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1 };
                    if (done == 0 && fds.Length > 0)
                    {
                        new Span<byte>(control, space).Clear();
                        var h = (LibC.CMsgHdr*)control;
                        h->Len = (nuint)(CmsgAlign(sizeof(LibC.CMsgHdr)) + fds.Length * sizeof(int));
                        h->Level = LibC.SOL_SOCKET;
                        h->Type = LibC.SCM_RIGHTS;
                        int* fdp = (int*)(control + CmsgAlign(sizeof(LibC.CMsgHdr)));
                        for (int i = 0; i < fds.Length; i++) fdp[i] = fds[i].Fd;
                        msg.Control = control;
                        msg.ControlLen = (nuint)space;
                    }
                    nint n = LibC.SendMsg(sock, &msg, LibC.MSG_NOSIGNAL);
                    if (n < 0)
                    {
                        int e = LibC.Errno;
                        if (e == LibC.EINTR) continue;
                        throw new IOException($"sendmsg failed: {LibC.Describe(e)}");
                    }
                    done += (int)n;
                }
            }
        }
        finally
        {
            for (int i = 0; i < fds.Length; i++) if (refs[i]) fds[i].DangerousRelease();
            if (added) _handle.DangerousRelease();
        }
    }

    /// <summary>Wakes a blocked receive with EOF (used to stop a server that is mid-connection).</summary>
    public void Shutdown()
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            LibC.Shutdown((int)_handle.DangerousGetHandle(), 2);
        }
        catch (ObjectDisposedException) { }
        finally { if (added) _handle.DangerousRelease(); }
    }

    public void Dispose() => _owner?.Dispose();
}
