/*
 * dsi_list.h - a circular doubly-linked intrusive list, as UCX's ucs_list and Linux's list_head.
 *
 * A record that can sit on a list embeds a dsi_list_t link; the list itself is one more
 * dsi_list_t, the head, that never belongs to a record. An empty list is a head linked to itself,
 * so pushing, unlinking and popping have no NULL or first/last special cases, and a record can
 * leave its list in O(1) without knowing which list it is on or walking it.
 *
 * Ownership: the list owns nothing. Records are allocated and freed by their owner, which must
 * take a record off its list before freeing it (and free the records still on a list before
 * dropping its head). A record is on at most one list per link member at a time.
 *
 * Not thread-safe: whoever owns the head serialises every call on it (a loop thread, a mutex).
 * Everything here is static inline, so lists cost no calls on hot paths and util/ needs no .c.
 */
#ifndef DSI_LIST_H
#define DSI_LIST_H

#include <stddef.h>

typedef struct dsi_list {
    struct dsi_list *prev, *next; /* neighbours; a head's own address at the ends */
} dsi_list_t;

/*
 * The record of type `type` whose member `member` is at `ptr`. `ptr` must point at that member of
 * a real record: it is never NULL-checked (callers check a popped or head link first).
 */
#define dsi_container_of(ptr, type, member) \
    ((type *)(void *)(((char *)(ptr)) - offsetof(type, member)))

/* Makes `head` an empty list. Every head must be initialised before any other call on it. */
static inline void dsi_list_init(dsi_list_t *head)
{
    head->prev = head;
    head->next = head;
}

/* 1 when the list has no records. */
static inline int dsi_list_is_empty(const dsi_list_t *head)
{
    return head->next == head;
}

/* Appends `elem` (not on any list) at the tail: pop_front then gives records in FIFO order. */
static inline void dsi_list_push_back(dsi_list_t *head, dsi_list_t *elem)
{
    elem->prev = head->prev;
    elem->next = head;
    head->prev->next = elem;
    head->prev = elem;
}

/* Inserts `elem` (not on any list) at the head: pop_front then gives records in LIFO order. */
static inline void dsi_list_push_front(dsi_list_t *head, dsi_list_t *elem)
{
    elem->prev = head;
    elem->next = head->next;
    head->next->prev = elem;
    head->next = elem;
}

/*
 * Unlinks `elem` from whatever list it is on, in O(1). Its links are cleared to NULL afterwards,
 * so removing it twice or following its links once it is off the list faults at once instead of
 * silently corrupting the list it left. Pushing it onto a list again is fine.
 */
static inline void dsi_list_remove(dsi_list_t *elem)
{
    elem->prev->next = elem->next;
    elem->next->prev = elem->prev;
    elem->prev = NULL;
    elem->next = NULL;
}

/* The first record's link, or NULL when the list is empty; the record stays on the list. */
static inline dsi_list_t *dsi_list_head(const dsi_list_t *head)
{
    return head->next == head ? NULL : head->next;
}

/* Unlinks and returns the first record's link, or NULL when the list is empty. */
static inline dsi_list_t *dsi_list_pop_front(dsi_list_t *head)
{
    dsi_list_t *elem = dsi_list_head(head);
    if (elem != NULL)
        dsi_list_remove(elem);
    return elem;
}

/* Moves every record of `from` to the tail of `to`, in order, in O(1); `from` is left empty. */
static inline void dsi_list_splice_back(dsi_list_t *to, dsi_list_t *from)
{
    if (from->next == from)
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    dsi_list_init(from);
}

/* The record whose link is `ptr` on the list `head`, or NULL when `ptr` is the head (the end). */
#define dsi_list_entry_or_null_(ptr, head, type, member) \
    ((ptr) == (head) ? NULL : dsi_container_of(ptr, type, member))

/*
 * Iterates from head to tail, declaring `type *elem` for the loop body only. The body must not
 * remove `elem` (use the _safe variant); records it pushes at the tail are visited in turn. `head`
 * is evaluated more than once, so it must have no side effects. `type` may be const-qualified.
 * The container of the head itself is never formed: the loop stops on the link, not the record.
 */
#define dsi_list_for_each(elem, head, type, member)                                            \
    for (type *elem = dsi_list_entry_or_null_((head)->next, head, type, member); elem != NULL; \
         elem = dsi_list_entry_or_null_(elem->member.next, head, type, member))

/* The record after `elem` on the list `head`: NULL at the end, or when `elem` is NULL. */
#define dsi_list_next_or_null_(elem, head, type, member) \
    ((elem) == NULL ? NULL : dsi_list_entry_or_null_((elem)->member.next, head, type, member))

/*
 * Like dsi_list_for_each, but the body may remove (and free) the current `elem`: its successor
 * is read before the body runs, into the hidden variable `elem##_next_`. The body must not remove
 * or free that successor, which is visited next regardless.
 */
#define dsi_list_for_each_safe(elem, head, type, member)                         \
    for (type *elem = dsi_list_entry_or_null_((head)->next, head, type, member), \
              *elem##_next_ = dsi_list_next_or_null_(elem, head, type, member);  \
         elem != NULL;                                                           \
         elem = elem##_next_, elem##_next_ = dsi_list_next_or_null_(elem, head, type, member))

#endif
