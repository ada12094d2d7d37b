using VirtioSharp.Interop;
namespace VirtioSharp.VhostUser.Interop;

/// <summary>
/// Checks a descriptor a manager handed over (vhost-user.rst's --fd convention). Managers pass either one end of a
/// connected socket pair or, with socket activation, a listening socket; anything else is refused with a message
/// saying what the descriptor is.
/// </summary>
internal static unsafe class InheritedSocket
{
    /// <summary>True for a listening Unix stream socket, false for a connected one; otherwise <see cref="ArgumentException"/>.</summary>
    public static bool IsListening(int fd)
    {
        if (!TryGetOption(fd, LibC.SO_DOMAIN, out int domain, out int errno))
        {
            throw new ArgumentException(errno switch
            {
                LibC.EBADF => $"fd {fd} is not an open descriptor",
                LibC.ENOTSOCK => $"fd {fd} is not a socket ({WhatIs(fd)})",
                _ => $"fd {fd}: getsockopt failed: {LibC.Describe(errno)}",
            });
        }
        if (domain != LibC.AF_UNIX) throw new ArgumentException($"fd {fd} is a socket of address family {domain}, not a Unix socket");
        int type = GetOption(fd, LibC.SO_TYPE);
        if (type != LibC.SOCK_STREAM)
        {
            string kind = type switch { LibC.SOCK_DGRAM => "datagram", LibC.SOCK_SEQPACKET => "seqpacket", _ => $"type {type}" };
            throw new ArgumentException($"fd {fd} is a Unix {kind} socket, not a stream socket");
        }
        bool listening = GetOption(fd, LibC.SO_ACCEPTCONN) != 0;
        if (!listening && !HasPeer(fd)) throw new ArgumentException($"fd {fd} is a Unix stream socket that is neither connected nor listening");
        MakeBlocking(fd);
        return listening;
    }

    // The back-end's loops block in recvmsg/accept; a manager may hand over a non-blocking socket (EAGAIN otherwise).
    internal static void MakeBlocking(int fd)
    {
        int flags = LibC.Fcntl(fd, LibC.F_GETFL, 0);
        if (flags < 0 || ((flags & LibC.O_NONBLOCK) != 0 && LibC.Fcntl(fd, LibC.F_SETFL, flags & ~LibC.O_NONBLOCK) < 0))
            throw new IOException($"fd {fd}: cannot make the socket blocking: {LibC.Describe(LibC.Errno)}");
    }

    private static bool TryGetOption(int fd, int option, out int value, out int errno)
    {
        int v = 0;
        uint len = sizeof(int);
        bool ok = LibC.GetSockOpt(fd, LibC.SOL_SOCKET, option, &v, &len) == 0;
        errno = ok ? 0 : LibC.Errno;
        value = v;
        return ok;
    }

    private static int GetOption(int fd, int option) =>
        TryGetOption(fd, option, out int v, out int errno) ? v : throw new IOException($"getsockopt({option}) on fd {fd} failed: {LibC.Describe(errno)}");

    private static bool HasPeer(int fd)
    {
        byte* addr = stackalloc byte[128];   // sockaddr_storage
        uint len = 128;
        if (LibC.GetPeerName(fd, addr, &len) == 0) return true;
        int errno = LibC.Errno;
        return errno == LibC.ENOTCONN ? false : throw new IOException($"getpeername on fd {fd} failed: {LibC.Describe(errno)}");
    }

    // /proc names what the descriptor is (a path, pipe:[N], anon_inode:...), which tells the user what was passed.
    private static string WhatIs(int fd)
    {
        try { return new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "unknown kind"; }
        catch (IOException) { return "unknown kind"; }
        catch (UnauthorizedAccessException) { return "unknown kind"; }
    }
}
